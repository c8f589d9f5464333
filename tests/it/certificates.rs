//! OpenSSH certificates against real sshd hosts: certificate-only hosts (host certificate
//! signed by a host CA, users admitted only with a certificate of a user CA, an EMPTY
//! authorized_keys) reached with a known_hosts file holding only `@cert-authority` lines, the
//! user certificate beside the identity file or held by a real `ssh-agent`; and every way a
//! host certificate or user certificate is refused, each with its own message.

use std::fs;
use std::path::Path;

use crate::support::certificates::{Agent, Authority, certificate_only};
use crate::support::{Fleet, Ran, Scenario, live_release, path_str, run};

/// A scenario of `hosts` certificate-only hosts (host certificates valid for `127.0.0.1`
/// signed by the returned host CA) and the fleet's client key certified by the user CA
/// (`client_key-cert.pub` beside it), with known_hosts holding only `@cert-authority * CA`.
fn certificate_fleet(hosts: usize) -> (Scenario, Authority, Authority) {
    let mut fleet = Fleet::start(hosts);
    let host_authority = Authority::new(fleet.dir(), "host_ca");
    let user_authority = Authority::new(fleet.dir(), "user_ca");
    for index in 0..hosts {
        certificate_only(
            &mut fleet,
            index,
            &host_authority,
            &user_authority,
            "127.0.0.1",
            "always:forever",
        );
    }
    let user = fleet.user().to_string();
    user_authority.sign(fleet.client_key(), false, &user, "-5m:+1h");
    fs::write(
        fleet.known_hosts(),
        format!("@cert-authority * {}\n", host_authority.public_key()),
    )
    .expect("write known_hosts");
    (Scenario::on(fleet), host_authority, user_authority)
}

fn assert_failed_with(ran: &Ran, host: &str, expected: &[&str]) {
    let entry = ran.host(host);
    assert_eq!(entry["result"], "failed", "{entry:#}\n{}", ran.stderr);
    let error = ran.error(host);
    for part in expected {
        assert!(error.contains(part), "{host}: {part:?} not in {error:?}");
    }
}

fn known_hosts_text(scenario: &Scenario) -> String {
    fs::read_to_string(scenario.fleet().known_hosts()).expect("read known_hosts")
}

#[test]
fn a_certificate_only_fleet_takes_a_push() {
    let (scenario, _, _) = certificate_fleet(2);
    let before = known_hosts_text(&scenario);
    let ran = scenario.push("v1", &[("index.html", "one")]).expect_code(0);
    for host in scenario.hosts() {
        assert_eq!(ran.host(&host.name)["result"], "ok");
        assert_eq!(live_release(&host.root.join("app")).as_deref(), Some("v1"));
    }
    // The CA line was enough: nothing was recorded beside it.
    assert_eq!(known_hosts_text(&scenario), before);
}

#[test]
fn a_cert_authority_line_applies_only_to_the_hosts_its_patterns_match() {
    let (scenario, host_authority, _) = certificate_fleet(2);
    let first = scenario.host(0);
    fs::write(
        scenario.fleet().known_hosts(),
        format!(
            "@cert-authority [127.0.0.1]:{},*.example.com {}\n",
            first.port,
            host_authority.public_key()
        ),
    )
    .expect("write known_hosts");
    let ran = scenario.json(&["check"]);
    assert_eq!(ran.host("web1")["result"], "ok", "{}", ran.stdout);
    // No CA line applies to web2: it is an unknown host (its plain key is in no file).
    assert_failed_with(&ran, "web2", &["is not in any known_hosts file"]);
}

#[test]
fn host_certificates_are_refused_each_with_its_own_reason() {
    let (mut scenario, host_authority, user_authority) = certificate_fleet(5);
    let other_authority = Authority::new(scenario.dir(), "other_ca");
    let fleet = scenario.fleet_mut();
    certificate_only(
        fleet,
        0,
        &other_authority,
        &user_authority,
        "127.0.0.1",
        "always:forever",
    );
    certificate_only(
        fleet,
        1,
        &host_authority,
        &user_authority,
        "db.example.com,10.0.0.1",
        "always:forever",
    );
    certificate_only(
        fleet,
        2,
        &host_authority,
        &user_authority,
        "127.0.0.1",
        "20200101:20200102",
    );
    certificate_only(
        fleet,
        3,
        &host_authority,
        &user_authority,
        "127.0.0.1",
        "20990101:20990102",
    );
    // web5 keeps its good certificate.
    let before = known_hosts_text(&scenario);
    for policy in ["strict", "accept-new"] {
        let text = scenario.inventory_text().replacen(
            "[ssh]\n",
            &format!("[ssh]\nhost_key_policy = \"{policy}\"\n"),
            1,
        );
        fs::write(scenario.inventory(), text).expect("write inventory");
        let ran = scenario.json(&["check"]);
        assert_failed_with(
            &ran,
            "web1",
            &["signed by an unknown CA", "no @cert-authority line"],
        );
        assert_failed_with(
            &ran,
            "web2",
            &[
                "is not valid for the name `127.0.0.1`",
                "db.example.com, 10.0.0.1",
            ],
        );
        assert_failed_with(&ran, "web3", &["expired at 2020-01-0"]);
        assert_failed_with(&ran, "web4", &["is not valid before 2099-01-0"]);
        assert_eq!(ran.host("web5")["result"], "ok", "{}", ran.stdout);
        if policy == "accept-new" {
            assert!(ran.error("web1").contains("accept-new never records"));
        }
        // Nothing recorded, under accept-new either: a certificate-signed host is never
        // recorded as a plain key.
        assert_eq!(known_hosts_text(&scenario), before, "{policy}");
    }
    // A push sends nothing to a refused host.
    let ran = scenario.push("v1", &[("index.html", "one")]);
    for host in &scenario.hosts()[..4] {
        assert_eq!(ran.host(&host.name)["bytes"], 0, "{}", ran.stdout);
        assert_eq!(live_release(&host.root.join("app")), None);
    }
}

#[test]
fn revoked_host_keys_and_authorities_are_refused() {
    let (scenario, host_authority, _) = certificate_fleet(2);
    let revoked_host = &scenario.host(0).host_key_public;
    fs::write(
        scenario.fleet().known_hosts(),
        format!(
            "@cert-authority * {}\n@revoked [127.0.0.1]:* {revoked_host}\n",
            host_authority.public_key()
        ),
    )
    .expect("write known_hosts");
    let ran = scenario.json(&["check"]);
    assert_failed_with(
        &ran,
        "web1",
        &["the host key of web1", "is REVOKED in", ":2"],
    );
    assert_eq!(ran.host("web2")["result"], "ok", "{}", ran.stdout);

    fs::write(
        scenario.fleet().known_hosts(),
        format!(
            "@cert-authority * {0}\n@revoked * {0}\n",
            host_authority.public_key()
        ),
    )
    .expect("write known_hosts");
    let ran = scenario.json(&["check"]);
    for host in ["web1", "web2"] {
        assert_failed_with(&ran, host, &["the CA key", "is REVOKED in", ":2"]);
    }
}

#[test]
fn a_revoked_plain_key_is_refused() {
    let scenario = Scenario::new(1);
    let host = scenario.host(0);
    fs::write(
        scenario.fleet().known_hosts(),
        format!(
            "{}\n@revoked * {}\n",
            host.known_hosts_line(),
            host.host_key_public
        ),
    )
    .expect("write known_hosts");
    let ran = scenario.json(&["check"]);
    assert_failed_with(&ran, "web1", &["is REVOKED in", ":2"]);
}

#[test]
fn an_expired_user_certificate_is_named_in_the_error() {
    let (scenario, _, user_authority) = certificate_fleet(1);
    let user = scenario.fleet().user().to_string();
    let certificate = user_authority.sign(
        scenario.fleet().client_key(),
        false,
        &user,
        "20200101:20200102",
    );
    let ran = scenario.json(&["check"]);
    assert_failed_with(
        &ran,
        "web1",
        &[&format!(
            "certificate {} expired at 2020-01-0",
            path_str(&certificate)
        )],
    );
}

/// An inventory for `scenario` with no identity file: only the agent can authenticate.
fn agent_only(scenario: &Scenario) {
    let client = format!("[\"{}\"]", scenario.fleet().client_key().display());
    let text = scenario.inventory_text();
    assert!(text.contains(&client), "{text}");
    fs::write(scenario.inventory(), text.replace(&client, "[]")).expect("write inventory");
}

#[test]
fn certificates_in_the_agent_are_offered_as_certificates() {
    let (scenario, _, user_authority) = certificate_fleet(2);
    let agent = Agent::start(scenario.dir(), "agent");
    agent.add(scenario.fleet().client_key());
    assert!(agent.listing().contains("CERT"), "{}", agent.listing());
    let scenario = scenario.env("SSH_AUTH_SOCK", agent.socket());
    agent_only(&scenario);
    let ran = scenario.push("v1", &[("index.html", "one")]).expect_code(0);
    for host in scenario.hosts() {
        assert_eq!(ran.host(&host.name)["result"], "ok");
        assert_eq!(live_release(&host.root.join("app")).as_deref(), Some("v1"));
    }

    // The same key with an expired certificate, in another agent: named in the error.
    let expired_key = scenario.dir().join("expired_key");
    fs::copy(scenario.fleet().client_key(), &expired_key).expect("copy key");
    fs::copy(
        Path::new(&format!("{}.pub", path_str(scenario.fleet().client_key()))),
        format!("{}.pub", path_str(&expired_key)),
    )
    .expect("copy public key");
    let user = scenario.fleet().user().to_string();
    user_authority.sign(&expired_key, false, &user, "20200101:20200102");
    let expired_agent = Agent::start(scenario.dir(), "expired");
    expired_agent.add(&expired_key);
    let scenario = scenario.env("SSH_AUTH_SOCK", expired_agent.socket());
    let ran = scenario.json(&["check"]);
    for host in ["web1", "web2"] {
        assert_failed_with(
            &ran,
            host,
            &["agent certificate `deploy-test`", "expired at 2020-01-0"],
        );
    }
}

#[test]
fn accept_new_records_a_host_reached_under_many_names_once() {
    let scenario = Scenario::new(1);
    let port = scenario.host(0).port;
    fs::write(scenario.fleet().known_hosts(), "").expect("empty known_hosts");
    // Ten inventory hosts on the same address and port, connecting at the same time: one
    // known_hosts line between them.
    let aliases: Vec<String> = (1..=10).map(|number| format!("alias{number}")).collect();
    let entries: String = aliases
        .iter()
        .map(|alias| {
            format!("[[hosts]]\nname = \"{alias}\"\naddress = \"127.0.0.1\"\nport = {port}\n\n")
        })
        .collect();
    let text = scenario
        .inventory_text()
        .replacen("[ssh]\n", "[ssh]\nhost_key_policy = \"accept-new\"\n", 1)
        .replacen("[[hosts]]\n", &format!("{entries}[[hosts]]\n"), 1);
    fs::write(scenario.inventory(), text).expect("write inventory");
    let ran = run(scenario
        .json_command()
        .args(["--concurrency", "20", "check"]))
    .expect_code(0);
    for host in aliases.iter().map(String::as_str).chain(["web1"]) {
        assert_eq!(ran.host(host)["result"], "ok", "{}", ran.stdout);
    }
    let recorded = known_hosts_text(&scenario);
    assert_eq!(
        recorded,
        format!("{}\n", scenario.host(0).known_hosts_line())
    );
}
