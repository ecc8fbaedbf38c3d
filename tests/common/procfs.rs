//! One reader of `/proc/<pid>/stat` for the tests: a process's state and
//! parent, and the processes there are. (The host has its own, in
//! `supervisor::procfs`; a test reads what the kernel says, not bosun.)

/// What the tests read of a process's `stat`.
pub struct Stat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Its parent.
    pub ppid: u32,
}

/// `pid`'s stat, if it exists. The command name may hold spaces and
/// parentheses, so the fields are read after its last `)`.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 2..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

/// Whether `pid` is a live process: there, and neither a zombie nor dead.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Every pid in `/proc` now.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
