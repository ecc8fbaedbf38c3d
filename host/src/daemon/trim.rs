//! Giving back the pages of bosun's own binary that only its start used.
//!
//! The binary is ~45 MB, most of it wasmtime and Cranelift. Starting (the
//! command line, the config, the compiled plugins loaded, every project set
//! up) runs code from all over it, and the kernel maps each page it faults
//! in together with its neighbours. An idle daemon so kept 12-17 MiB of its
//! binary resident, three quarters of its RSS, for code it seldom runs
//! again. Once the processes have started, bosun asks the kernel to reclaim
//! the pages of its binary mapped by it alone (`madvise(MADV_PAGEOUT)`):
//! what runs again (serving, supervising) is faulted back in, from the page
//! cache or the disk, one page at a time (`MADV_RANDOM`: no neighbours
//! come along, nor read-ahead, which also makes a rare path such as a
//! reload fault in page by page), and the rest costs no memory. Plugins
//! are compiled in a child process, which maps the binary afresh.
//! Contents never change:
//! the pages are clean copies of the file (the relocated, written ones are
//! private memory, which this leaves alone without swap). See
//! docs/benchmarks.md for what it saves.

/// Reclaim the resident pages of this process's own executable; how many
/// bytes of mappings were advised. Nothing is done where `/proc` cannot
/// say which mappings those are.
pub(crate) fn give_back_start_pages() -> usize {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    // The file this very code is mapped from (device and inode as /proc
    // names them, also under overlay file systems or once replaced).
    let here = give_back_start_pages as *const () as usize;
    let Some(exe) = maps
        .lines()
        .filter_map(mapping)
        .find(|m| (m.start..m.start + m.len).contains(&here))
        .map(|m| m.file)
    else {
        return 0;
    };
    let mut advised = 0;
    for m in maps.lines().filter_map(mapping) {
        if m.file != exe || m.writable {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process's executable
        // as /proc lists it (page-aligned). Neither advice changes contents:
        // MADV_RANDOM has a fault bring in the page faulted (not its
        // neighbours too), and MADV_PAGEOUT changes which pages are
        // resident: a file page is read again from the file, a private one
        // is kept (or swapped).
        #[allow(unsafe_code)]
        let done = unsafe {
            let at = m.start as *mut libc::c_void;
            libc::madvise(at, m.len, libc::MADV_RANDOM);
            libc::madvise(at, m.len, libc::MADV_PAGEOUT)
        };
        if done == 0 {
            advised += m.len;
        }
    }
    tracing::debug!(
        advised_bytes = advised,
        "gave back the pages of bosun's binary its start used"
    );
    advised
}

/// One line of /proc/self/maps (`start-end perms offset dev inode path`).
#[derive(Debug, PartialEq)]
struct Mapping<'a> {
    start: usize,
    len: usize,
    writable: bool,
    /// Device and inode; `None` for anonymous memory.
    file: Option<(&'a str, u64)>,
}

fn mapping(line: &str) -> Option<Mapping<'_>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let dev = fields.nth(1)?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some(Mapping {
        start,
        len: end.checked_sub(start)?,
        writable: perms.contains('w'),
        file: (inode != 0).then_some((dev, inode)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_read_with_their_file() {
        let line = "55d0d000-55d0f000 r-xp 00001000 fe:00 77 /usr/bin/bosun (deleted)";
        assert_eq!(
            mapping(line),
            Some(Mapping {
                start: 0x55d0d000,
                len: 0x2000,
                writable: false,
                file: Some(("fe:00", 77)),
            })
        );
        let anonymous = mapping("7f01000-7f02000 rw-p 00000000 00:00 0").expect("a mapping");
        assert_eq!((anonymous.file, anonymous.writable), (None, true));
        assert_eq!(mapping("garbage"), None);
    }

    fn resident_file_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .expect("RssFile")
    }

    #[test]
    fn the_binary_s_pages_are_given_back_and_its_code_still_runs() {
        let before = resident_file_kib();
        let advised = give_back_start_pages();
        let after = resident_file_kib();
        assert!(advised > 0, "no mapping of this binary was found");
        assert!(
            after < before,
            "resident file pages {before} KiB before, {after} KiB after"
        );
        // Code and constants of this binary, faulted back in.
        let again: Vec<_> = ["a", "b"].iter().map(|s| s.repeat(2)).collect();
        assert_eq!(again, ["aa", "bb"]);
    }
}
