//! The Debian package's config is the documented example with system paths, so the two cannot
//! drift apart; the package itself is built, installed and started by `packaging/check-deb.sh`
//! (run by `.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::repo;

#[test]
fn the_packaged_config_is_the_example_with_system_paths() {
    let example = std::fs::read_to_string(repo().join("config/calltrackd.toml")).unwrap();
    let packaged = std::fs::read_to_string(repo().join("packaging/calltrackd.toml")).unwrap();
    let body = |text: &str| {
        text.lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| {
                l.replace("data_dir = \"./var\"", "data_dir = \"/var/lib/calltrackd\"")
                    .replace("\"fixtures/audio/", "\"/usr/share/calltrackd/audio/")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        body(&example),
        body(&packaged),
        "packaging/calltrackd.toml must be config/calltrackd.toml with data_dir and the audio \
         paths replaced"
    );
    assert!(packaged.contains("data_dir = \"/var/lib/calltrackd\""));
}

#[test]
fn every_packaged_file_exists() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        if source.starts_with("target/") {
            continue;
        }
        let found = if source.contains('*') {
            let dir = repo().join(source.rsplit_once('/').unwrap().0);
            std::fs::read_dir(dir).unwrap().count() > 0
        } else {
            repo().join(source).is_file()
        };
        assert!(found, "packaged file {source} is missing");
    }
}
