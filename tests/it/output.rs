use crate::support::Fleet;
use crate::{deploy, tarball};

#[test]
fn scratch() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory("[services.app]\nbase_dir = \"app\"\nversion = \"v1\"\nartifact = \"v1.tar.gz\"\n");
    let _v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let inv = inventory.to_str().unwrap();
    for args in [vec!["push", "-i", inv, "--no-progress"], vec!["push", "-i", inv, "--no-progress", "--version", "v2"], vec!["push", "-i", inv, "--log-format", "json", "-v", "--output", "json", "--version", "v3"]] {
        let ran = deploy(&args);
        eprintln!("=== {args:?} code {}\n--- stdout\n{}--- stderr\n{}", ran.code, ran.stdout, ran.stderr);
    }
}
