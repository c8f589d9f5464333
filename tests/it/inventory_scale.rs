//! Inventories by hand against a real fleet: host ranges, per-host variables, and selectors
//! (`a,b`, `!x`, `a:&b`, globs) in `--hosts` and in a service's `hosts`; their errors name file,
//! line and key.

use crate::support::Scenario;

fn hosts_of(ran: &crate::support::Ran) -> Vec<String> {
    ran.json()["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|host| host["host"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn selectors_union_minus_intersect_and_glob() {
    let scenario = Scenario::new(3);
    let select = |selection: &str| {
        hosts_of(
            &scenario
                .json(&["--hosts", selection, "exec", "--", "true"])
                .expect_code(0),
        )
    };
    assert_eq!(select("web*,!web2"), ["web1", "web3"]);
    assert_eq!(select("web:&even"), ["web2"]);
    assert_eq!(select("web3,web1"), ["web1", "web3"]);
    assert_eq!(select("!odd"), ["web2"]);
    let typo = scenario
        .json(&["--hosts", "db*", "exec", "--", "true"])
        .expect_code(2);
    assert!(
        typo.stderr.contains("`db*` matches no host name or tag"),
        "{}",
        typo.stderr
    );
}

#[test]
fn a_host_range_expands_in_order_and_its_env_reaches_the_command() {
    let scenario = Scenario::new(1);
    let port = scenario.host(0).port;
    let scenario = scenario.toml(&format!(
        "[[hosts]]\nname = \"extra[08:10]\"\naddress = \"127.0.0.1\"\nport = {port}\ntags = [\"extra\"]\nenv = {{ REGION = \"eu\" }}\n\n"
    ))
    .service("hosts = [\"extra:!extra09\"]\n[services.app.env]\nREGION = \"service\"\nTIER = \"web\"\n");
    let ran = scenario
        .json(&[
            "--hosts",
            "extra*",
            "exec",
            "--",
            "echo \"$DEPLOY_HOST $REGION\"",
        ])
        .expect_code(0);
    assert_eq!(hosts_of(&ran), ["extra08", "extra09", "extra10"]);
    assert_eq!(ran.host("extra09")["stdout"], "extra09 eu\n");
    let text = scenario
        .text(&["--hosts", "extra*", "exec", "--", "echo $REGION"])
        .expect_code(0);
    assert!(
        text.stdout
            .starts_with("== extra08, extra09, extra10 (3) [ok]\neu\n"),
        "{}",
        text.stdout
    );
    // The service's hosts: the range minus one; the host's env wins over the service's.
    // (The range's hosts share one sshd and base_dir: one push makes v1 live for all.)
    let artifact = scenario.versioned_artifact("v1");
    scenario
        .push_artifact("v1", &artifact, &["--hosts", "extra08"])
        .expect_code(0);
    let ran = scenario
        .json(&["exec", "--service", "app", "--", "echo \"$REGION $TIER\""])
        .expect_code(0);
    assert_eq!(hosts_of(&ran), ["extra08", "extra10"]);
    assert_eq!(ran.host("extra10")["stdout"], "eu web\n");
}

#[test]
fn range_and_selector_errors_name_file_line_and_key() {
    let scenario =
        Scenario::new(1).toml("[[hosts]]\nname = \"db[1:3]\"\naddress = \"10.0.0.[1:2]\"\n\n");
    let ran = scenario.json(&["exec", "--", "true"]).expect_code(2);
    assert!(
        ran.stderr.contains("deploy.toml:") && ran.stderr.contains(": hosts[1].address: address range expands to 2 addresses but the name range to 3 names; they must have equal lengths"),
        "{}",
        ran.stderr
    );
    let line = scenario
        .inventory_text()
        .lines()
        .position(|line| line.starts_with("address = \"10.0.0.[1:2]\""))
        .expect("line")
        + 1;
    assert!(
        ran.stderr.contains(&format!("deploy.toml:{line}: ")),
        "{}",
        ran.stderr
    );
    let scenario = Scenario::new(1).service("hosts = [\"web:eu\"]\n");
    let ran = scenario.json(&["status"]).expect_code(2);
    assert!(
        ran.stderr
            .contains(": services.app.hosts[0]: selector `web:eu`: after `:` comes"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_child_inventory_extends_a_base_and_errors_name_the_file_holding_the_key() {
    let scenario = Scenario::new(2);
    let directory = scenario.dir();
    let base = directory.join("base.toml");
    std::fs::write(
        &base,
        scenario.fleet().inventory_text(
            "[services.app]\nbase_dir = \"app\"\n[services.app.env]\nTIER = \"web\"\nSTAGE = \"base\"\n",
        ),
    )
    .expect("write base");
    let child = directory.join("staging.toml");
    std::fs::write(
        &child,
        "extends = \"base.toml\"\n\n[services.app.env]\nSTAGE = \"staging\"\n",
    )
    .expect("write child");
    let ran = crate::support::run(crate::support::json_command(&child).args([
        "--hosts",
        "web2",
        "exec",
        "--",
        "echo $DEPLOY_HOST",
    ]))
    .expect_code(0);
    assert_eq!(hosts_of(&ran), ["web2"]);
    let artifact = scenario.versioned_artifact("v1");
    crate::support::run(crate::support::json_command(&child).args([
        "push",
        "--version",
        "v1",
        "--artifact",
        artifact.to_str().expect("utf-8 path"),
    ]))
    .expect_code(0);
    let ran = crate::support::run(crate::support::json_command(&child).args([
        "exec",
        "--service",
        "app",
        "--",
        "echo $TIER $STAGE",
    ]))
    .expect_code(0);
    assert_eq!(ran.host("web1")["stdout"], "web staging\n");
    // A bad value in the base is reported in the base, at its line.
    let text = std::fs::read_to_string(&base).expect("read base");
    std::fs::write(&base, text.replace("TIER = \"web\"", "TIER = 7")).expect("write");
    let line = text
        .lines()
        .position(|line| line.starts_with("TIER"))
        .expect("TIER line")
        + 1;
    let ran =
        crate::support::run(crate::support::json_command(&child).args(["status"])).expect_code(2);
    assert!(
        ran.stderr
            .contains(&format!("base.toml:{line}: services.app.env.TIER: ")),
        "{}",
        ran.stderr
    );
}
