// A runner plugin in JavaScript: posts an event as JSON to a webhook, with a
// bearer token read from a granted secret.
//
// Built with ComponentizeJS (SpiderMonkey in WebAssembly) against the runner's
// world, `runner:plugin/plugin@0.1.0` in sdk/wit (see examples/plugins/build.sh).
// The contract's imports are ES modules (`runner:plugin/secrets@0.1.0`, ...);
// `describe` and `run` are this module's exports. `fetch` goes out through
// `wasi:http`, so every request is checked against the playbook's `grants.http`.

import { get as secret } from 'runner:plugin/secrets@0.1.0';
import { log } from 'runner:plugin/log@0.1.0';

const VERSION = '0.1.0';

const INPUT_SCHEMA = {
  type: 'object',
  properties: {
    url: { type: 'string', pattern: '^https?://', description: 'The webhook.' },
    event: { type: 'string', minLength: 1, description: 'What happened, e.g. `deployed`.' },
    text: { type: 'string', description: 'One line for people.' },
    fields: { type: 'object', description: 'Anything else, sent as is.' },
    token_secret: {
      type: 'string',
      default: 'WEBHOOK_TOKEN',
      description: 'The granted secret holding the bearer token.',
    },
  },
  required: ['url', 'event'],
  additionalProperties: false,
};

// The most of a webhook's answer kept in the outputs.
const MAX_RESPONSE = 4096;

/** A failure of one of the contract's kinds: `invalid-input`, `denied`, `failed`, `retryable`. */
class StepError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

export function describe() {
  return {
    name: 'js-webhook',
    version: VERSION,
    description: 'Post an event to a webhook with a bearer token (JavaScript, ComponentizeJS)',
    inputSchema: JSON.stringify(INPUT_SCHEMA),
    capabilities: ['http', 'secrets'],
  };
}

// `result<step-output, step-error>`: return the output, or throw the error as
// the variant `{ tag, val }`. Anything else thrown would trap the plugin and
// lose its message, so every exception is mapped here.
export async function run(input) {
  try {
    return await notify(JSON.parse(input));
  } catch (e) {
    if (e instanceof StepError) throw { tag: e.kind, val: e.message };
    throw { tag: 'failed', val: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}

async function notify(args) {
  const name = args.token_secret ?? 'WEBHOOK_TOKEN';
  let token;
  try {
    token = secret(name);
  } catch (e) {
    // The host's refusal arrives as the error's `payload`; it names the grant to add.
    throw new StepError('denied', e.payload ?? String(e));
  }
  const origin = new URL(args.url).origin;
  const body = JSON.stringify({
    event: args.event,
    text: args.text ?? '',
    fields: args.fields ?? {},
    sent_at: new Date().toISOString(),
  });
  log('info', `posting "${args.event}" to ${origin}`, JSON.stringify({ bytes: body.length }));
  const start = Date.now();
  let response;
  try {
    response = await fetch(args.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    });
  } catch (e) {
    // A refused URL lands here too; the runner reports it as `denied` with its
    // own message whatever the plugin says.
    throw new StepError('retryable', `could not reach ${origin}: ${e.message}`);
  }
  const text = (await response.text()).slice(0, MAX_RESPONSE);
  const latency_ms = Date.now() - start;
  if (!response.ok) {
    const kind = response.status >= 500 || response.status === 429 ? 'retryable' : 'failed';
    throw new StepError(kind, `the webhook answered ${response.status}: ${text.trim()}`);
  }
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = text;
  }
  return {
    outputs: JSON.stringify({ status: response.status, latency_ms, response: answer }),
    summary: `posted "${args.event}" to ${origin}: ${response.status} in ${latency_ms} ms`,
    artifacts: [],
  };
}
