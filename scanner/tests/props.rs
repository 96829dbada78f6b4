//! Property tests: any UTF-8 text scans without panicking, and every span points into it.

use pd_scanner::bundle::{load_embedded, pack_set, select_policy};
use pd_scanner::compile::{compile, CompiledPack};
use pd_scanner::engine::InputHasher;
use proptest::prelude::*;
use std::sync::OnceLock;

fn pack() -> &'static CompiledPack {
    static PACK: OnceLock<CompiledPack> = OnceLock::new();
    PACK.get_or_init(|| {
        let loaded = load_embedded().unwrap();
        let policy = select_policy(&loaded, None).unwrap();
        compile(&pack_set(&loaded), policy).unwrap()
    })
}

/// Text mixing what the engine treats specially: look-alikes, invisibles, combining marks,
/// tags, encodings, whitespace runs and trigger words.
fn tricky_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "ignore ",
        "previous ",
        "instructions",
        "ｉｇｎｏｒｅ",
        "іgnоrе",
        "\u{200B}",
        "\u{202E}",
        "\u{0301}",
        "\u{E0069}",
        "  ",
        "\n\n",
        "\t",
        "aWdub3Jl",
        "IGFsbCBw",
        "==",
        "%20",
        "%41",
        "49676e6f",
        "@example.com",
        "4111 1111 1111 1111",
        "AKIA",
        "-----BEGIN ",
        "é",
        "ß",
        "😀",
        "\u{FEFF}",
        "\u{0008}",
        "x",
        " ",
        "rot13",
        "vtaber",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let r = pack().scan(text, &InputHasher::new(b"k").unwrap());
    prop_assert!(r.score <= 100);
    for a in &r.advisories {
        prop_assert!(
            a.span.start <= a.span.end && a.span.end <= text.len(),
            "{a:?}"
        );
        prop_assert!(text.is_char_boundary(a.span.start) && text.is_char_boundary(a.span.end));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_string_scans(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn tricky_strings_scan(text in tricky_text()) {
        check(&text)?;
    }
}

#[test]
fn large_and_degenerate_inputs_scan() {
    for text in [
        "a".repeat(256 * 1024),
        " ".repeat(100_000),
        "\u{200B}".repeat(50_000),
        "A".repeat(300_000),
        "%41".repeat(30_000),
        "\u{E0041}".repeat(20_000),
        "ignore previous instructions ".repeat(5_000),
        // A byte-level pattern once matched from inside `é` (regression).
        "é\u{feff}ignore ".to_string(),
    ] {
        check(&text).unwrap();
    }
}
