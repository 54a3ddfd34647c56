//! What a new user meets in the first hour: honest exit codes, output that survives pipes,
//! messages that name their cause.

use super::Env;

fn prompt(env: &Env, name: &str) {
    env.ok(&["prompt", "create", name, "--template", "Hi {{name}}"]);
}

#[test]
fn a_closed_stdout_and_stderr_never_make_runner_panic() {
    let env = Env::new();
    prompt(&env, "greet");
    for (args, code) in [
        (vec!["prompt", "show", "nosuch"], 2),
        (vec!["prompt", "list"], 0),
        (vec!["tag", "history", "greet", "--json"], 0),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .std_cmd()
            .args(&args)
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(code), "{args:?} (101 is a panic)");
    }
}

#[test]
fn without_user_the_author_comes_from_git_then_the_account() {
    let env = Env::new();
    let home = env.path("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".gitconfig"), "[user]\n\tname = Ada Lovelace\n").unwrap();
    let out = env
        .std_cmd()
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["prompt", "create", "greet", "--template", "x"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = env.json(&["prompt", "show", "greet", "--json"]);
    assert_eq!(shown["author"], "Ada Lovelace");
    // No git name either: the account's name, never "unknown".
    let empty_home = env.path("empty");
    std::fs::create_dir(&empty_home).unwrap();
    let out = env
        .std_cmd()
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("HOME", &empty_home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["prompt", "update", "greet", "--template", "y"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = env.json(&["prompt", "show", "greet", "--json"]);
    assert_ne!(shown["author"], "unknown");
    assert!(!shown["author"].as_str().unwrap().is_empty());
}
