//! The request loop: many requests in flight on one `wasi:io/poll` loop.
//!
//! Why not `wstd` (which the SDK's `http` module uses)? Its executor asks the
//! host about *every* pending pollable after each task it runs, and the host's
//! `poll` builds a boxed future per pollable per call: with 16 requests in
//! flight that is ~50 host allocations per request, and it was the largest cost
//! of a load test. This loop calls `poll` once per round with one pollable per
//! request in flight and advances every request that is ready. It also makes
//! only the calls a request needs: no header or option resources it does not
//! use, the response headers never copied into the guest.
//!
//! The per-request timeout is kept here, not by the host: a request past its
//! deadline is dropped (the host then closes its connection), whatever stage it
//! is in (connect, waiting for the head, reading the body).
//!
//! Resources are dropped children first (a pollable before what it watches, the
//! body stream before the body), as the host requires.

use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method,
    OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::{InputStream, StreamError};

use crate::{Model, Outcome, Stats, schedule};

/// Nanoseconds on the monotonic clock.
type Nanos = u64;

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How early an open-model request may start. The host's timers have 1 ms
/// ticks (a wake-up comes up to 1 ms late), so requests due within the next
/// tick go out at once instead of up to a tick late: the rate holds on average
/// and sub-millisecond gaps become small bursts, and the generator's own timer
/// never shows up as latency.
const EARLY: Nanos = 1_000_000;

/// The request every worker sends, parsed once.
pub struct Target {
    method: Method,
    scheme: Scheme,
    authority: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    timeout: Nanos,
}

impl Target {
    /// Checks the URL and headers once, so a mistake is one clear error instead
    /// of one per request.
    pub fn new(
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("`url` {url:?}: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(format!("`url` {url:?}: the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`url` {url:?} has no host"))?
            .as_str()
            .to_owned();
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        // The host refuses forbidden or malformed headers: find out now.
        Fields::from_list(&headers).map_err(|e| format!("`headers`: {e:?}"))?;
        Ok(Target {
            method,
            scheme,
            authority,
            path,
            headers,
            body: body.map(|b| b.as_bytes().to_vec()),
            timeout: nanos(timeout),
        })
    }

    /// Starts one request: the head goes to the host, the body (if any) after.
    fn start(&self) -> Result<Stage, Outcome> {
        let fields = Fields::from_list(&self.headers)
            .map_err(|e| Outcome::Error(format!("headers: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let set = |ok: Result<(), ()>, what: &str| {
            ok.map_err(|()| Outcome::Error(format!("the host refused the request's {what}")))
        };
        if !matches!(self.method, Method::Get) {
            set(request.set_method(&self.method), "method")?;
        }
        set(request.set_scheme(Some(&self.scheme)), "scheme")?;
        set(request.set_authority(Some(&self.authority)), "authority")?;
        set(request.set_path_with_query(Some(&self.path)), "path")?;
        let body = match &self.body {
            Some(_) => Some(
                request
                    .body()
                    .map_err(|()| Outcome::Error("the request body is not available".into()))?,
            ),
            None => None,
        };
        let future = outgoing_handler::handle(request, None).map_err(Outcome::from)?;
        if let (Some(out), Some(data)) = (body, &self.body) {
            write_body(out, data)?;
        }
        let pollable = future.subscribe();
        Ok(Stage::Head { pollable, future })
    }
}

fn write_body(out: OutgoingBody, data: &[u8]) -> Result<(), Outcome> {
    let failed = |e: StreamError| Outcome::Error(format!("writing the request body: {e:?}"));
    {
        let stream = out
            .write()
            .map_err(|()| Outcome::Error("the request body stream is not available".into()))?;
        // The host's largest write at once.
        for chunk in data.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(failed)?;
        }
    }
    OutgoingBody::finish(out, None).map_err(Outcome::from)
}

impl From<ErrorCode> for Outcome {
    fn from(code: ErrorCode) -> Outcome {
        let text = format!("{code:?}");
        match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                Outcome::Denied(text)
            }
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => Outcome::Timeout(text),
            _ => Outcome::Error(text),
        }
    }
}

/// Where a request in flight is. Field order is drop order: children first.
enum Stage {
    /// Waiting for the response head.
    Head {
        pollable: Pollable,
        future: FutureIncomingResponse,
    },
    /// Reading the response body to its end (which hands the connection back
    /// to the host's pool for the next request).
    Body {
        pollable: Option<Pollable>,
        stream: InputStream,
        body: IncomingBody,
        response: IncomingResponse,
        status: u16,
    },
}

/// What advancing a request gave.
enum Step {
    Wait(Stage),
    Done(Outcome),
}

impl Stage {
    fn pollable(&self) -> Option<&Pollable> {
        match self {
            Stage::Head { pollable, .. } => Some(pollable),
            Stage::Body { pollable, .. } => pollable.as_ref(),
        }
    }

    /// Moves on as far as possible without waiting.
    fn advance(self) -> Step {
        match self {
            Stage::Head { pollable, future } => {
                drop(pollable);
                let response = match future.get() {
                    None => {
                        return Step::Wait(Stage::Head {
                            pollable: future.subscribe(),
                            future,
                        });
                    }
                    Some(Err(())) => {
                        return Step::Done(Outcome::Error("the response was taken twice".into()));
                    }
                    Some(Ok(Err(code))) => return Step::Done(Outcome::from(code)),
                    Some(Ok(Ok(response))) => response,
                };
                drop(future);
                let status = response.status();
                let Ok(body) = response.consume() else {
                    return Step::Done(Outcome::Error("the response body is not available".into()));
                };
                let Ok(stream) = body.stream() else {
                    return Step::Done(Outcome::Error(
                        "the response body stream is not available".into(),
                    ));
                };
                Stage::Body {
                    pollable: None,
                    stream,
                    body,
                    response,
                    status,
                }
                .advance()
            }
            Stage::Body {
                pollable,
                stream,
                body,
                response,
                status,
            } => {
                drop(pollable);
                let outcome = loop {
                    match stream.read(64 << 10) {
                        Ok(bytes) if bytes.is_empty() => {
                            return Step::Wait(Stage::Body {
                                pollable: Some(stream.subscribe()),
                                stream,
                                body,
                                response,
                                status,
                            });
                        }
                        Ok(_) => {}
                        Err(StreamError::Closed) => break Outcome::Status(status),
                        Err(StreamError::LastOperationFailed(e)) => {
                            break Outcome::Error(format!(
                                "reading the response body: {}",
                                e.to_debug_string()
                            ));
                        }
                    }
                };
                // Children first (locals would drop in the reverse order).
                drop(stream);
                drop(body);
                drop(response);
                Step::Done(outcome)
            }
        }
    }
}

/// One request in flight.
struct InFlight {
    stage: Stage,
    /// When it should have started (open model) or started (closed model).
    since: Nanos,
    deadline: Nanos,
}

/// Runs the load and records every request in `stats`.
pub fn run(
    model: Model,
    target: &Target,
    duration: Duration,
    ramp: Duration,
    max_in_flight: u32,
    stats: &mut Stats,
) {
    let start = monotonic_clock::now();
    let end = start.saturating_add(nanos(duration));
    let mut lanes = Lanes::default();
    match model {
        Model::Open(rate) => {
            let mut i = 0u64;
            let mut next = start;
            loop {
                let now = monotonic_clock::now();
                while next <= now.saturating_add(EARLY) && next < end && stats.denied.is_none() {
                    if lanes.busy >= max_in_flight as usize {
                        stats.record_overloaded(max_in_flight);
                    } else {
                        // Late: from when it should have started (no
                        // coordinated omission); early: from now.
                        lanes.begin(target, next.min(now), None, stats);
                    }
                    i += 1;
                    next = start.saturating_add(nanos(schedule(i, rate, ramp)));
                }
                let more = next < end && stats.denied.is_none();
                if lanes.busy == 0 && !more {
                    break;
                }
                lanes.wait(more.then_some(next.saturating_sub(EARLY)), stats);
            }
        }
        Model::Closed(workers) => {
            // Worker w starts its first request at ready[w] (spread over the
            // ramp-up), and its next one as soon as the last is answered.
            let ready: Vec<Nanos> = (0..workers)
                .map(|w| {
                    start.saturating_add(nanos(ramp.mul_f64(f64::from(w) / f64::from(workers))))
                })
                .collect();
            lanes.slots.resize_with(ready.len(), || None);
            loop {
                let now = monotonic_clock::now();
                let mut later: Option<Nanos> = None;
                if now < end && stats.denied.is_none() {
                    for (w, &at) in ready.iter().enumerate() {
                        if lanes.slots[w].is_some() {
                            continue;
                        }
                        if at <= now {
                            lanes.begin(target, now, Some(w), stats);
                        } else if at < end {
                            later = Some(later.map_or(at, |l| l.min(at)));
                        }
                    }
                }
                if lanes.busy == 0 && later.is_none() {
                    if now >= end || stats.denied.is_some() {
                        break;
                    }
                    // Every request failed at once: go again.
                    continue;
                }
                lanes.wait(later, stats);
            }
        }
    }
}

/// The requests in flight, by slot.
#[derive(Default)]
struct Lanes {
    slots: Vec<Option<InFlight>>,
    busy: usize,
    /// The wake-up timer and when it fires; kept across rounds while it fires
    /// no later than needed (an early wake-up costs one round, a new timer two
    /// host calls per round).
    timer: Option<(Nanos, Pollable)>,
}

impl Lanes {
    /// Starts a request in slot `at` (closed model: the worker's own) or the
    /// first free one; one that fails at once is recorded at once.
    fn begin(&mut self, target: &Target, since: Nanos, at: Option<usize>, stats: &mut Stats) {
        let stage = match target.start() {
            Ok(stage) => stage,
            Err(outcome) => {
                stats.record(monotonic_clock::now().saturating_sub(since), &outcome);
                return;
            }
        };
        let flight = InFlight {
            stage,
            since,
            deadline: since.saturating_add(target.timeout),
        };
        let slot = match at {
            Some(w) => w,
            None => match self.slots.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    self.slots.push(None);
                    self.slots.len() - 1
                }
            },
        };
        self.slots[slot] = Some(flight);
        self.busy += 1;
    }

    /// Waits until a request can move on, the earliest deadline passes, or
    /// `until` (the next scheduled start); moves on every request that can.
    fn wait(&mut self, until: Option<Nanos>, stats: &mut Stats) {
        let deadline = self.slots.iter().flatten().map(|f| f.deadline).min();
        let wake = match (until, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = monotonic_clock::now();
        let keep = matches!((&self.timer, wake), (Some((at, _)), Some(w)) if *at <= w && *at > now);
        if !keep {
            self.timer = None;
            self.timer = wake.map(|w| (w, monotonic_clock::subscribe_instant(w)));
        }
        let mut owners = Vec::with_capacity(self.busy + 1);
        let mut list: Vec<&Pollable> = Vec::with_capacity(self.busy + 1);
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(p) = slot.as_ref().and_then(|f| f.stage.pollable()) {
                owners.push(i);
                list.push(p);
            }
        }
        if let Some((_, t)) = &self.timer {
            list.push(t);
        }
        if list.is_empty() {
            return;
        }
        let ready = poll(&list);
        drop(list);
        for index in ready {
            let Some(&slot) = owners.get(index as usize) else {
                continue; // the timer
            };
            let Some(flight) = self.slots[slot].take() else {
                continue;
            };
            match flight.stage.advance() {
                Step::Wait(stage) => self.slots[slot] = Some(InFlight { stage, ..flight }),
                Step::Done(outcome) => {
                    self.busy -= 1;
                    stats.record(
                        monotonic_clock::now().saturating_sub(flight.since),
                        &outcome,
                    );
                }
            }
        }
        // Past their deadline: dropped, which makes the host give up on them.
        let now = monotonic_clock::now();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|f| f.deadline <= now) {
                let flight = slot.take().expect("checked above");
                drop(flight.stage);
                self.busy -= 1;
                stats.record(
                    now.saturating_sub(flight.since),
                    &Outcome::Timeout(format!(
                        "no complete answer within {} ms",
                        (flight.deadline - flight.since) / 1_000_000
                    )),
                );
            }
        }
    }
}
