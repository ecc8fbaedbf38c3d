//! What a project gives its processes and plugins: its environment,
//! instances of their own, and a handle that reaches only its own.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_comes_from_dotenv_then_config_and_dotenv_is_reread_on_restart() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"env\"\ncommand = \"./env.sh\"\ninstances = 2\n\
         env = { FROM_CONFIG = \"config\", BOTH = \"config wins\" }\n",
    );
    s.script(
        "env.sh",
        "echo \"$BOSUN_INSTANCE $GREETING $FROM_CONFIG $BOTH\"\nexec sleep 1000",
    );
    std::fs::write(s.app().join(".env"), "GREETING=hello\nBOTH=dotenv\n").expect("write .env");
    let (sup, app) = s.start().await;
    let printed = |app: &ProjectHandle| -> Vec<String> {
        app.logs(None, 100)
            .expect("logs")
            .iter()
            .filter(|l| !l.text.starts_with("[bosun]"))
            .map(|l| l.text.clone())
            .collect()
    };
    eventually("both instances print", || printed(&app).len() == 2).await;
    let mut lines = printed(&app);
    lines.sort();
    assert_eq!(
        lines,
        ["0 hello config config wins", "1 hello config config wins"]
    );

    std::fs::write(s.app().join(".env"), "GREETING=bonjour\n").expect("rewrite .env");
    app.restart(Some("env")).await.expect("restart");
    eventually("reprinted", || printed(&app).len() == 4).await;
    let mut lines = printed(&app);
    lines.sort();
    assert_eq!(
        lines,
        [
            "0 bonjour config config wins",
            "0 hello config config wins",
            "1 bonjour config config wins",
            "1 hello config config wins"
        ]
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_drive_their_own_project_through_the_handle_and_no_other() {
    use bosun::plugins::ProjectScope;
    use bosun::stock;
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [projects.other]\ndir = \"other\"\n[[projects.other.processes]]\nname = \"db\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n",
    );
    let (sup, app) = s.start().await;
    let other = sup.project("other").expect("other");
    eventually("both running", || {
        app.list()[0].state == State::Running && other.list()[0].state == State::Running
    })
    .await;
    let db_pid = other.list()[0].pid;
    let web_pid = app.list()[0].pid;

    let engine = common::engine();
    let restart = engine
        .load("restart", stock::bytes("restart").expect("stock"))
        .await
        .expect("loads");
    let scope = ProjectScope::new("app", s.app()).with_processes(Arc::new(app.clone()));
    let log = common::Log::default();
    let out = engine
        .run(
            &restart,
            common::request(scope.clone(), &[("ready_timeout", "20s")], &log),
        )
        .await
        .expect("restart succeeds");
    let out: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(out[0]["name"], "web");
    assert_eq!(out[0]["state"], "running");
    assert_ne!(app.list()[0].pid, web_pid, "web was restarted");

    let failure = engine
        .run(&restart, common::request(scope, &[("name", "db")], &log))
        .await
        .expect_err("db belongs to another project");
    assert_eq!(
        failure.message,
        "not found: this project has no process named `db`"
    );
    assert_eq!(
        other.list()[0].pid,
        db_pid,
        "the other project's process is untouched"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_sharing_a_name_get_instances_of_their_own() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo first $BOSUN_INSTANCE; exec sleep 1000\"]\n\
         [[projects.app.processes]]\nname = \"web\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo second $BOSUN_INSTANCE; exec sleep 1000\"]\ninstances = 2\n",
    );
    let (sup, app) = s.start().await;
    eventually("three running", || {
        app.list()
            .iter()
            .filter(|p| p.state == State::Running)
            .count()
            == 3
    })
    .await;
    let instances: Vec<u32> = app.list().iter().map(|p| p.instance).collect();
    assert_eq!(instances, vec![0, 1, 2]);
    eventually("each its own log file", || {
        [
            ("web-0", "first 0"),
            ("web-1", "second 1"),
            ("web-2", "second 2"),
        ]
        .iter()
        .all(|(label, line)| {
            std::fs::read_to_string(s.log_file(label)).is_ok_and(|t| t.contains(line))
        })
    })
    .await;
    sup.shutdown().await;
}
