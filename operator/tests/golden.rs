//! Golden file: everything `render` produces for `config/samples/`. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p pd-operator --test golden` and review the diff.

use std::path::{Path, PathBuf};

#[test]
fn samples_render_to_the_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let children = pd_operator::render::render(
        &[root.join("../config/samples")],
        &pd_operator::builders::Settings::default(),
    )
    .unwrap();
    let yaml = pd_operator::render::to_yaml(&children).unwrap();
    let golden: PathBuf = root.join("tests/golden/acme-chat.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &yaml).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if want != yaml {
        let line = want
            .lines()
            .zip(yaml.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(yaml.lines().count()));
        panic!(
            "rendered objects differ from {} (first difference at line {}); if the change is \
             intended, run `UPDATE_GOLDEN=1 cargo test -p pd-operator --test golden`",
            golden.display(),
            line + 1
        );
    }
}
