//! Times for records (UTC) and for people (local wall clock).

use k8s_openapi::jiff::Timestamp;

/// `2025-01-31T12:03:04.123Z`
pub fn utc_now() -> String {
    let now = Timestamp::now();
    format!(
        "{}.{:03}Z",
        now.strftime("%Y-%m-%dT%H:%M:%S"),
        now.subsec_millisecond()
    )
}

/// `12:03:04`, local time (UTC when the time zone cannot be had).
pub fn local_hms() -> String {
    // SAFETY: `time` with a null pointer only returns the time; `localtime_r` writes
    // into the `tm` we own and reads the process's time zone settings.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return Timestamp::now().strftime("%H:%M:%S").to_string();
        }
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        let utc = super::utc_now();
        assert_eq!(utc.len(), "2025-01-31T12:03:04.123Z".len(), "{utc}");
        assert!(utc.ends_with('Z'));
        assert_eq!(super::local_hms().len(), 8);
    }
}
