//! The admin CLI (`ivm-sipd subscriber ...`) against a running server.

use ivm_e2e::Server;

#[test]
fn add_list_remove_while_running() {
    let server = Server::start("").expect("start ivm-sipd");
    server
        .admin_ok(&[
            "subscriber",
            "add",
            "5001",
            "--password",
            "pw5001",
            "--name",
            "Alice Example",
            "--msisdn",
            "+15550001",
            "--pin",
            "1234",
        ])
        .expect("subscriber add with all options");
    server.add_subscriber("5002", "pw5002").expect("subscriber add");

    assert_eq!(
        server.subscriber_numbers().expect("subscribers table"),
        ["5001", "5002"]
    );

    let list = server.admin_ok(&["subscriber", "list"]).expect("subscriber list");
    let lines: Vec<&str> = list.lines().filter(|l| l.contains("500")).collect();
    assert_eq!(lines.len(), 2, "one line per subscriber expected:\n{list}");
    assert!(list.contains("5001") && list.contains("5002"), "{list}");
    assert!(!list.contains("pw5001"), "list must not print passwords:\n{list}");

    let json = server
        .admin_ok(&["subscriber", "list", "--json"])
        .expect("subscriber list --json");
    assert!(json.contains("\"5001\"") && json.contains("\"5002\""), "{json}");
    assert!(
        json.trim_start().starts_with('[') || json.trim_start().starts_with('{'),
        "not JSON:\n{json}"
    );
    assert!(
        !json.contains("pw5001"),
        "list --json must not print passwords:\n{json}"
    );

    server
        .admin_ok(&["subscriber", "remove", "5001"])
        .expect("subscriber remove");
    assert_eq!(server.subscriber_numbers().expect("subscribers table"), ["5002"]);
    let list = server.admin_ok(&["subscriber", "list"]).expect("subscriber list");
    assert!(!list.contains("5001"), "{list}");
    assert_eq!(server.options().expect("server still answers OPTIONS").status, 200);
}

#[test]
fn import_csv() {
    let server = Server::start("").expect("start ivm-sipd");
    let csv = server
        .write_file(
            "subs.csv",
            "number,password,name,msisdn,pin\n6001,pw6001,Bob,+15550601,0000\n6002,pw6002,,,\n6003,pw6003,\"Carol, Jr.\",,\n",
        )
        .expect("write csv");
    server
        .admin_ok(&["subscriber", "import", &csv.to_string_lossy()])
        .expect("subscriber import");
    assert_eq!(
        server.subscriber_numbers().expect("subscribers table"),
        ["6001", "6002", "6003"]
    );
}

#[test]
fn bad_input_is_refused_with_nonzero_exit() {
    let server = Server::start("").expect("start ivm-sipd");
    let no_password = server.admin(&["subscriber", "add", "7001"]).expect("run");
    assert!(
        !no_password.success(),
        "add without --password should fail:\n{no_password:?}"
    );
    let bad_csv = server
        .write_file("bad.csv", "this,is,not\nthe,right,header\n")
        .expect("write");
    let imported = server
        .admin(&["subscriber", "import", &bad_csv.to_string_lossy()])
        .expect("run");
    assert!(
        !imported.success(),
        "import of a CSV with a wrong header should fail:\n{imported:?}"
    );
    let missing = server.admin(&["subscriber", "remove", "7999"]).expect("run");
    assert!(
        !missing.success(),
        "removing an unknown subscriber should fail:\n{missing:?}"
    );
    assert!(server.subscriber_numbers().expect("subscribers table").is_empty());
}

#[test]
fn bad_config_is_refused() {
    // Unknown keys are errors: the server must not start.
    let err = Server::start("[sip]\nno_such_key = 1\n")
        .err()
        .expect("server must refuse an unknown config key");
    let msg = format!("{err:#}");
    assert!(msg.contains("exited during startup"), "{msg}");
}
