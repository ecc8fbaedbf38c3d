//! What confinement costs one spawn: `/bin/true` started and reaped, as a
//! plain child, through an unconfined project's jail (clean environment,
//! session, cgroup leaf, limits) and through a confined one (all that, plus
//! a mount namespace with the private /tmp, the capability bounding set,
//! the project's user, no_new_privs and Landlock). The goal: at most 1 ms
//! more per spawn than without confinement.
//!
//! Run with: cargo bench -p bosun --bench confine
//! (as root, for every layer; without root it measures what bosun can do)

mod common;

use common::runtime;

use std::time::{Duration, Instant};

use bosun::config::Config;
use bosun::confine::{Confinement, Role};

const SPAWNS: usize = 500;

fn main() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::TempDir::new().expect("temp");
        for p in ["confined", "unconfined"] {
            std::fs::create_dir_all(dir.path().join(p)).expect("mkdir");
        }
        let path = dir.path().join("bosun.toml");
        std::fs::write(
            &path,
            "state_dir = \"state\"\n[projects.confined]\ndir = \"confined\"\n\
             [projects.unconfined]\ndir = \"unconfined\"\nunconfined = true\n",
        )
        .expect("config");
        let config = Config::load(&path).expect("config");
        let confinement = Confinement::start(&config, Role::Server)
            .await
            .expect("confinement");
        println!("| spawn and reap `/bin/true` | median | p95 |\n|---|---|---|");
        let plain = measure(|| async {
            let status = tokio::process::Command::new("/bin/true")
                .status()
                .await
                .expect("true");
            assert!(status.success());
        })
        .await;
        row("a plain child (tokio::process)", plain);
        for project in ["unconfined", "confined"] {
            let jail = confinement.jail(project).expect("jail");
            let times = measure(|| {
                let jail = jail.clone();
                async move {
                    let mut cmd = jail.command("/bin/true");
                    cmd.own_leaf("bench");
                    let mut jailed = cmd.spawn().expect("spawn");
                    assert!(jailed.child.wait().await.expect("wait").success());
                }
            })
            .await;
            row(&format!("through the jail of the {project} project"), times);
        }
        println!(
            "\nconfined project: {}",
            confinement
                .report("confined")
                .expect("the confined project")
                .summary()
        );
        confinement.close();
    });
}

async fn measure<F, Fut>(mut once: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..20 {
        once().await;
    }
    let mut times = Vec::with_capacity(SPAWNS);
    for _ in 0..SPAWNS {
        let t = Instant::now();
        once().await;
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn row(what: &str, times: Vec<Duration>) {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!(
        "| {what} | {} | {} |",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100])
    );
}
