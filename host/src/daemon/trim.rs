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
//! cache or the disk, and the rest costs no memory. Contents never change:
//! the pages are clean copies of the file (the relocated, written ones are
//! private memory, which this leaves alone without swap). See
//! docs/benchmarks.md for what it saves.

use std::os::unix::fs::MetadataExt as _;

/// Reclaim the resident pages of this process's own executable. Nothing
/// is done where `/proc` cannot say which mappings those are.
pub(crate) fn give_back_start_pages() {
    let Ok(exe) = std::fs::metadata("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let mut reclaimed = 0usize;
    for (start, len) in maps.lines().filter_map(|l| own_mapping(l, exe.ino())) {
        // SAFETY: the range is a whole mapping of this process's executable
        // as /proc lists it (page-aligned). Neither advice changes contents:
        // MADV_RANDOM has a fault bring in the page faulted (not its
        // neighbours too), and MADV_PAGEOUT changes which pages are
        // resident: a file page is read again from the file, a private one
        // is kept (or swapped).
        #[allow(unsafe_code)]
        let done = unsafe {
            let at = start as *mut libc::c_void;
            libc::madvise(at, len, libc::MADV_RANDOM);
            libc::madvise(at, len, libc::MADV_PAGEOUT)
        };
        if done == 0 {
            reclaimed += len;
        }
    }
    tracing::debug!(
        mapped_bytes = reclaimed,
        "gave back the pages of bosun's binary its start used"
    );
}

/// The start and length of a read-only mapping of inode `exe`, from a line
/// of /proc/self/maps (`start-end perms offset dev inode path`).
fn own_mapping(line: &str, exe: u64) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let inode: u64 = fields.nth(2)?.parse().ok()?;
    if inode != exe || perms.contains('w') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some((start, end.checked_sub(start)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_mappings_of_the_executable_are_picked() {
        let lines = [
            "55d0c000-55d0d000 r--p 00000000 fe:00 77 /usr/bin/bosun",
            "55d0d000-55d0f000 r-xp 00001000 fe:00 77 /usr/bin/bosun (deleted)",
            "55d0f000-55d10000 rw-p 00003000 fe:00 77 /usr/bin/bosun",
            "7f00000-7f01000 r-xp 00000000 fe:00 78 /usr/lib/libc.so.6",
            "7f01000-7f02000 rw-p 00000000 00:00 0",
        ];
        let picked: Vec<_> = lines.iter().filter_map(|l| own_mapping(l, 77)).collect();
        assert_eq!(
            picked,
            vec![(0x55d0c000, 0x1000), (0x55d0d000, 0x2000)],
            "the executable's read-only mappings, also after it was replaced on disk"
        );
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
        give_back_start_pages();
        let after = resident_file_kib();
        assert!(
            after < before,
            "resident file pages {before} KiB before, {after} KiB after"
        );
        // Code and constants of this binary, faulted back in.
        let again: Vec<_> = ["a", "b"].iter().map(|s| s.repeat(2)).collect();
        assert_eq!(again, ["aa", "bb"]);
    }
}
