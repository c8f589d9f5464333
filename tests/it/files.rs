//! `shared_files` (files in `shared/` linked into every release) against a real fleet.

use crate::support::Scenario;

#[test]
fn a_shared_file_is_linked_as_a_file_and_a_missing_one_fails_staging() {
    let scenario =
        Scenario::new(2).service("shared_paths = [\"log\"]\nshared_files = [\"config/app.env\"]\n");
    let artifact = scenario.artifact(
        "v1",
        &[
            ("index.html", "one"),
            ("config/app.env", "from the release"),
        ],
    );
    std::fs::create_dir_all(scenario.app(0).join("shared/config")).expect("mkdir");
    std::fs::write(scenario.app(0).join("shared/config/app.env"), "SECRET=1\n").expect("write");
    let ran = scenario.push_artifact("v1", &artifact, &[]).expect_code(1);
    let error = ran.error("web2");
    assert!(
        error.contains("/app/shared/config/app.env is missing on this host: create it there"),
        "{error}"
    );
    assert_eq!(scenario.lives(), [None, None], "nothing switched");
    std::fs::create_dir_all(scenario.app(1).join("shared/config")).expect("mkdir");
    std::fs::write(scenario.app(1).join("shared/config/app.env"), "SECRET=2\n").expect("write");
    scenario.push_artifact("v1", &artifact, &[]).expect_code(0);
    for (index, content) in [(0, "SECRET=1\n"), (1, "SECRET=2\n")] {
        let app = scenario.app(index);
        assert_eq!(
            std::fs::read_link(app.join("releases/v1/config/app.env")).expect("a link"),
            std::path::PathBuf::from("../../../shared/config/app.env")
        );
        assert_eq!(
            std::fs::read_to_string(app.join("current/config/app.env")).expect("reads"),
            content
        );
        assert!(
            app.join("shared/config/app.env").is_file(),
            "a file, not a directory"
        );
        assert!(
            app.join("shared/log").is_dir(),
            "shared paths stay directories"
        );
    }
}
