//! Every fixture is registered in `fixtures/README.md` and used by a test.

#[test]
fn every_fixture_is_registered_and_tested() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("fixtures/README.md")).unwrap();
    let mut sources = String::new();
    for e in std::fs::read_dir(root.join("tests/it")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "fixtures.rs" {
            sources.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    let mut n = 0;
    for e in std::fs::read_dir(root.join("fixtures")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == "README.md" {
            continue;
        }
        n += 1;
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not registered in fixtures/README.md"
        );
        assert!(sources.contains(&name), "{name} is named by no test");
    }
    assert!(n >= 4);
}
