//! The `log` capability: structured lines and progress from a plugin, always
//! granted.
//!
//! Threat model: the plugin is hostile and wants to exhaust the runner's memory
//! or disk with log output, drown the on-call engineer's terminal, rewrite what
//! the terminal shows with escape sequences, or get a secret it was given printed
//! where people and the journal can read it. What must never happen: more than
//! [`MAX_LOG_LINES`] lines or [`MAX_LOG_BYTES`] kept per attempt; a line longer
//! than [`MAX_LOG_LINE`]; more than [`LOG_BURST`] lines at once or [`LOG_RATE`] a
//! second after that; a granted secret value, a control character (other than
//! the tab), a bidi control or a line separator in any kept or emitted line,
//! its fields, or the progress message.
//!
//! Grant: none (always on). Check: each message, each line's fields and each
//! progress message goes through [`from_plugin`] (redacted, then
//! made printable with visible escapes such as `\n` and `\u{1b}`, then cut to
//! [`MAX_LOG_LINE`] with a mark), so a secret that spans a newline inside one
//! line is still recognised and a secret at the cut is masked before it could
//! be cut in half; then the caps above, applied in [`LogSink::line`]: a line
//! over a cap is counted in [`StepLog::dropped`], not kept. The host's own
//! lines ([`StepLog::host_line`]) are made printable and not capped; the
//! runtime redacts them first. Out of reach: a secret the plugin splits across
//! two lines, or encodes, is not recognised (see [`super::text::redact`]). Host
//! implementation: kept lines go to the step's record and to `tracing` (target
//! `plugin`, field `plugin`), which the CLI filters with `RUNNER_LOG`.

use std::time::Instant;

use super::text::redact::Redactor;
use super::text::{from_plugin, printable};

/// Most log lines kept per step attempt; further lines are counted, not kept.
pub const MAX_LOG_LINES: usize = 10_000;
/// Most log bytes kept per step attempt (messages and fields).
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// Longest single log line kept; longer ones are cut.
pub const MAX_LOG_LINE: usize = 8 << 10;
/// Lines a plugin may log at once before the rate cap applies.
pub const LOG_BURST: u64 = 1000;
/// Lines per second a plugin may log after a burst.
pub const LOG_RATE: u64 = 100;

/// A log line written by a plugin (or by the host about it), already redacted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    #[serde(deserialize_with = "level")]
    pub level: Level,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fields: String,
}

/// A log line's level: one of [`LEVELS`]. An alias, not `&'static str` written
/// out, so that serde's derive does not take the field for a borrow of the input.
pub type Level = &'static str;

/// The levels a line may have, as the plugin contract's `log` interface names them.
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Reads a level back (from the journal) as one of [`LEVELS`]; the runner writes
/// no other, so another word is an error, not a new level.
fn level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Level, D::Error> {
    let word = <String as serde::Deserialize>::deserialize(d)?;
    LEVELS.into_iter().find(|l| *l == word).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown log level `{word}`, expected one of {}",
            LEVELS.join(", ")
        ))
    })
}

/// What the plugin logged, within the caps.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StepLog {
    pub lines: Vec<LogLine>,
    /// Lines dropped because a cap was reached.
    pub dropped: u64,
    #[serde(skip)]
    bytes: usize,
    /// Last progress report: done, total, message.
    pub progress: Option<(u64, Option<u64>, String)>,
}

impl StepLog {
    /// A line the host adds to the plugin's log (kept even past the caps).
    pub fn host_line(&mut self, level: &'static str, message: String) {
        self.lines.push(LogLine {
            level,
            message: printable(&message),
            fields: String::new(),
        });
    }
}

/// A token bucket: [`LOG_BURST`] lines at once, then [`LOG_RATE`] per second.
/// Credit is kept in nanoseconds so that no rounding drifts.
#[derive(Debug, Clone)]
pub struct RateCap {
    credit_ns: u128,
    last: Instant,
}

impl RateCap {
    const LINE_NS: u128 = 1_000_000_000 / LOG_RATE as u128;
    const FULL_NS: u128 = Self::LINE_NS * LOG_BURST as u128;

    pub fn new(now: Instant) -> RateCap {
        RateCap {
            credit_ns: Self::FULL_NS,
            last: now,
        }
    }

    /// Whether one more line may pass at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_nanos();
        self.credit_ns = (self.credit_ns + refill).min(Self::FULL_NS);
        self.last = now.max(self.last);
        if self.credit_ns >= Self::LINE_NS {
            self.credit_ns -= Self::LINE_NS;
            true
        } else {
            false
        }
    }
}

/// The log of one step attempt: applies the caps, redacts, emits.
#[derive(Debug)]
pub struct LogSink {
    plugin: String,
    log: StepLog,
    rate: RateCap,
}

impl LogSink {
    pub fn new(plugin: &str) -> LogSink {
        LogSink {
            plugin: plugin.to_owned(),
            log: StepLog::default(),
            rate: RateCap::new(Instant::now()),
        }
    }

    /// One line from the plugin; `level` is `trace` … `error`.
    pub fn line(&mut self, r: &Redactor, level: &'static str, message: String, fields: String) {
        self.line_at(Instant::now(), r, level, message, fields);
    }

    /// [`LogSink::line`] at `now` (the rate cap's clock; tests hold it still).
    fn line_at(
        &mut self,
        now: Instant,
        r: &Redactor,
        level: &'static str,
        message: String,
        fields: String,
    ) {
        let message = from_plugin(r, &message, MAX_LOG_LINE);
        let fields = from_plugin(r, &fields, MAX_LOG_LINE);
        let size = message.len() + fields.len();
        if self.log.lines.len() >= MAX_LOG_LINES
            || self.log.bytes + size > MAX_LOG_BYTES
            || !self.rate.take(now)
        {
            self.log.dropped += 1;
            return;
        }
        let plugin = self.plugin.as_str();
        let (m, f) = (message.as_str(), fields.as_str());
        match level {
            "error" => tracing::error!(target: "plugin", plugin, fields = f, "{m}"),
            "warn" => tracing::warn!(target: "plugin", plugin, fields = f, "{m}"),
            "info" => tracing::info!(target: "plugin", plugin, fields = f, "{m}"),
            "debug" => tracing::debug!(target: "plugin", plugin, fields = f, "{m}"),
            _ => tracing::trace!(target: "plugin", plugin, fields = f, "{m}"),
        }
        self.log.bytes += size;
        self.log.lines.push(LogLine {
            level,
            message,
            fields,
        });
    }

    /// The step's progress: `done` of `total` units.
    pub fn progress(&mut self, r: &Redactor, done: u64, total: Option<u64>, message: String) {
        let message = from_plugin(r, &message, MAX_LOG_LINE);
        self.log.progress = Some((done, total, message));
    }

    /// The host's own line about this attempt (a refusal, a cap reached).
    pub fn host_line(&mut self, level: &'static str, message: String) {
        self.log.host_line(level, message);
    }

    pub fn finish(self) -> StepLog {
        self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn levels_read_back_as_written_and_no_other() {
        for level in LEVELS {
            let line = LogLine {
                level,
                message: "m".into(),
                fields: String::new(),
            };
            let json = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<LogLine>(&json).unwrap(), line);
        }
        let err = serde_json::from_str::<LogLine>(r#"{"level":"loud","message":"m"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown log level `loud`"),
            "{err}"
        );
    }

    #[test]
    fn the_rate_cap_allows_a_burst_then_a_steady_rate() {
        let start = Instant::now();
        let mut cap = RateCap::new(start);
        let burst = (0..2000).filter(|_| cap.take(start)).count();
        assert_eq!(burst, LOG_BURST as usize);
        // One line per 1/LOG_RATE seconds afterwards: 100 lines in the next second.
        let later = (1..=1000)
            .filter(|i| cap.take(start + Duration::from_millis(*i)))
            .count();
        assert_eq!(later, LOG_RATE as usize);
        // Idle time refills up to the burst, not beyond.
        let much_later = start + Duration::from_secs(3600);
        let refilled = (0..5000).filter(|_| cap.take(much_later)).count();
        assert_eq!(refilled, LOG_BURST as usize);
    }

    #[test]
    fn lines_are_cut_stripped_and_redacted() {
        let r = Redactor::new(["hunter2".to_owned()]);
        let mut sink = LogSink::new("p");
        sink.line(
            &r,
            "info",
            "token=hunter2 \u{1b}[2Jcleared".into(),
            r#"{"pw":"hunter2"}"#.into(),
        );
        sink.line(&r, "warn", "x".repeat(MAX_LOG_LINE * 2), String::new());
        let log = sink.finish();
        assert_eq!(log.lines[0].message, "token=[redacted] \\u{1b}[2Jcleared");
        assert_eq!(log.lines[0].fields, r#"{"pw":"[redacted]"}"#);
        assert_eq!(log.lines[1].message.len(), MAX_LOG_LINE);
        assert!(log.lines[1].message.ends_with(crate::caps::text::CUT_MARK));
        assert_eq!(log.dropped, 0);
    }

    #[test]
    fn multi_line_secrets_and_secrets_at_the_cut_are_masked() {
        let secret = "first-half\nsecond-half";
        let r = Redactor::new([secret.to_owned()]);
        let mut sink = LogSink::new("p");
        sink.line(&r, "info", format!("key:\n{secret}\n"), String::new());
        // A JSON string spells the newline `\n`: still the secret.
        let fields = serde_json::json!({ "k": secret }).to_string();
        sink.line(&r, "info", "f".into(), fields);
        let pad = "x".repeat(MAX_LOG_LINE - 11);
        sink.line(&r, "info", format!("{pad}{secret}"), String::new());
        sink.progress(&r, 1, None, format!("{pad}{secret}"));
        let log = sink.finish();
        let progress = log.progress.clone().map(|p| p.2).unwrap_or_default();
        let texts = [
            log.lines[0].message.as_str(),
            log.lines[1].fields.as_str(),
            log.lines[2].message.as_str(),
            progress.as_str(),
        ];
        assert_eq!(texts[0], "key:\\n[redacted]\\n");
        assert_eq!(texts[1], r#"{"k":"[redacted]"}"#);
        for t in texts {
            assert!(
                !t.contains("first-half") && !t.contains("second-half"),
                "{t}"
            );
            assert!(!t.chars().any(crate::caps::text::hidden), "{t:?}");
            assert!(t.len() <= MAX_LOG_LINE);
        }
    }

    #[test]
    fn lines_past_the_count_cap_are_dropped_and_counted() {
        let r = Redactor::new([]);
        let mut sink = LogSink::new("p");
        // One instant for all: on a slow machine the loop itself would earn credit.
        let now = Instant::now();
        for _ in 0..(LOG_BURST + 5) {
            sink.line_at(now, &r, "info", "x".into(), String::new());
        }
        let log = sink.finish();
        assert_eq!(log.lines.len(), LOG_BURST as usize);
        assert_eq!(log.dropped, 5);
    }
}
