//! Logs: whole lines under heavy interleaving, rotation, and followers.

use super::*;

/// Writes `count` numbered lines with ANSI colours, in 8 KiB chunks that split lines.
const WRITER: &str = r#"
import os, sys
tag, count = sys.argv[1], int(sys.argv[2])
data = "".join("\x1b[32m%s %06d\x1b[0m\n" % (tag, i) for i in range(count)).encode()
for i in range(0, len(data), 8192):
    os.write(1, data[i:i + 8192])
"#;

fn data_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_200k_lines_give_zero_broken_lines_in_every_log() {
    const N: usize = 200_000;
    let s = Setup::new(&format!(
        "merged_log = \"state/logs/app.log\"\n\
         [[projects.app.processes]]\nname = \"a\"\ncommand = \"python3\"\nargs = [\"writer.py\", \"A\", \"{N}\"]\nstrip_ansi = true\nrestart_at = []\nlog_max_size = \"1GiB\"\n\
         [[projects.app.processes]]\nname = \"b\"\ncommand = \"python3\"\nargs = [\"writer.py\", \"B\", \"{N}\"]\nstrip_ansi = true\nrestart_at = []\nlog_max_size = \"1GiB\"\n"
    ));
    std::fs::write(s.app().join("writer.py"), WRITER).expect("write writer");
    let (sup, app) = s.start().await;
    eventually("both writers exit", || {
        app.list().iter().all(|p| p.state == State::Exited)
    })
    .await;
    let merged = s.root.path().join("state/logs/app.log");
    eventually("every line on disk", || {
        data_lines(&merged)
            .iter()
            .filter(|l| !l.contains("[bosun]"))
            .count()
            == 2 * N
    })
    .await;

    for (tag, label) in [("A", "a-0"), ("B", "b-0")] {
        let own: Vec<String> = data_lines(&s.log_file(label))
            .into_iter()
            .filter(|l| !l.starts_with("[bosun]"))
            .collect();
        let expected: Vec<String> = (0..N).map(|i| format!("{tag} {i:06}")).collect();
        assert!(
            own == expected,
            "{label}.log: {} lines, not exactly the {N} written in order",
            own.len()
        );
        let in_merged: Vec<String> = data_lines(&merged)
            .into_iter()
            .filter_map(|l| l.strip_prefix(&format!("{label} | ")).map(str::to_string))
            .filter(|l| !l.starts_with("[bosun]"))
            .collect();
        assert!(
            in_merged == expected,
            "merged log: {label}'s lines broken or out of order"
        );
    }
    let broken: Vec<String> = data_lines(&merged)
        .into_iter()
        .filter(|l| {
            let Some((label, text)) = l.split_once(" | ") else {
                return true;
            };
            let tag = match label {
                "a-0" => "A",
                "b-0" => "B",
                _ => return true,
            };
            !(text.starts_with("[bosun] ")
                || (text.len() == 8
                    && text.starts_with(tag)
                    && text[2..].bytes().all(|b| b.is_ascii_digit())))
        })
        .take(5)
        .collect();
    assert!(
        broken.is_empty(),
        "broken lines in the merged log: {broken:?}"
    );
    assert!(
        !std::fs::read_to_string(&merged)
            .expect("merged")
            .contains('\x1b'),
        "ANSI left in the merged log"
    );
    sup.shutdown().await;
}

/// Check a rotated log: `keep` rotated files besides the current one, none
/// more, each at most 64 KiB and of whole `line_len`-byte lines (bosun's own
/// notes aside). Returns the lines kept.
fn check_rotated(log: &Path, keep: u32, line_len: usize) -> usize {
    let mut total = 0;
    for n in 0..=keep {
        let path = if n == 0 {
            log.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{n}", log.display()))
        };
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(size <= 64 * 1024, "{} is {size} bytes", path.display());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with('\n'), "{} ends mid-line", path.display());
        for line in text.lines().filter(|l| !l.contains("[bosun]")) {
            assert_eq!(
                line.len(),
                line_len,
                "{}: a broken line: {line:?}",
                path.display()
            );
        }
        total += text.lines().count();
    }
    let extra = PathBuf::from(format!("{}.{}", log.display(), keep + 1));
    assert!(
        !extra.exists(),
        "more than {keep} rotated files of {}",
        log.display()
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_log_keep_files_of_whole_lines() {
    let s = Setup::new(
        "merged_log = \"state/logs/app.log\"\nmerged_log_max_size = \"64KiB\"\nmerged_log_keep = 2\n\
         [[projects.app.processes]]\nname = \"chatty\"\ncommand = \"python3\"\nargs = [\"-c\", \"import sys\\nfor i in range(5000): sys.stdout.write('line %06d %s\\\\n' % (i, 'x' * 88))\"]\n\
         restart_at = []\nlog_max_size = \"64KiB\"\nlog_keep = 3\n",
    );
    let (sup, app) = s.start().await;
    eventually("chatty exits", || status(&app, 0).state == State::Exited).await;
    let log = s.log_file("chatty-0");
    let merged = s.root.path().join("state/logs/app.log");
    eventually("the last line is on disk in both logs", || {
        [&log, &merged]
            .iter()
            .all(|path| data_lines(path).iter().any(|l| l.contains("line 004999 ")))
    })
    .await;
    let kept = check_rotated(&log, 3, 100);
    assert!(kept > 2000, "the kept files hold {kept} lines");
    // The merged log's lines carry the `chatty-0 | ` prefix.
    let kept = check_rotated(&merged, 2, 111);
    assert!(kept > 1000, "the merged files hold {kept} lines");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_get_recent_lines_then_live_ones_and_signals_reach_the_group() {
    let s =
        Setup::new("[[projects.app.processes]]\nname = \"ticker\"\ncommand = \"./ticker.sh\"\n");
    s.script(
        "ticker.sh",
        "trap 'echo got usr1' USR1\necho first\nwhile true; do sleep 0.05; done",
    );
    let (sup, app) = s.start().await;
    eventually("first line", || {
        app.logs(None, 10)
            .expect("logs")
            .iter()
            .any(|l| l.text == "first")
    })
    .await;
    let mut follow = app.follow(Some("ticker"), 10).expect("follow");
    assert!(
        follow.recent.iter().any(|l| l.text == "first"),
        "recent lines come first"
    );
    app.signal(Some("ticker"), nix::sys::signal::Signal::SIGUSR1)
        .await
        .expect("signal");
    // The whole group gets the signal, so the shell's `sleep` dies of it too
    // (and the shell says so) before the trap runs.
    tokio::time::timeout(Duration::from_secs(30), async {
        while follow.lines.recv().await.expect("open").text != "got usr1" {}
    })
    .await
    .expect("the trap's line arrives live");
    let err = app
        .signal(Some("nope"), nix::sys::signal::Signal::SIGUSR1)
        .await
        .expect_err("unknown name");
    assert_eq!(err.to_string(), "this project has no process named `nope`");
    sup.shutdown().await;
}
