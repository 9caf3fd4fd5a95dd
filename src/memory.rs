//! The process's own memory, as reports state it: resident now (the
//! server's `/healthz`) and at its peak (`gen`, `refresh`). Linux only
//! (`/proc/self/status`); `None` elsewhere. Cost: one small file read.

/// Resident memory now (`VmRSS`), in bytes.
pub fn resident_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident memory so far (`VmHWM`), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_is_at_least_resident() {
        let (now, peak) = (
            super::resident_bytes().unwrap(),
            super::peak_resident_bytes().unwrap(),
        );
        assert!(now > 0 && peak >= now);
    }
}
