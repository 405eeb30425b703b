//! Every `SPEC §…` citation in the code names a section of SPEC.md, or a numbered item of one
//! (`§6.2.3` is item 3 of §6.2). A citation of a section that does not exist fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// The sections of SPEC.md (`§6.2`) and their numbered items (`§6.2.3`).
fn spec_anchors(spec: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut section: Option<String> = None;
    for line in spec.lines() {
        if line.starts_with('#') {
            section = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix('§'))
                .map(|n| n.trim_end_matches('.').to_owned());
            if let Some(s) = &section {
                anchors.insert(s.clone());
            }
        } else if let (Some(s), Some((n, _))) = (&section, line.split_once(". ")) {
            if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) {
                anchors.insert(format!("{s}.{n}"));
            }
        }
    }
    anchors
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_spec_citation_names_a_section_or_item_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let anchors = spec_anchors(&std::fs::read_to_string(root.join("SPEC.md")).unwrap());
    assert!(
        anchors.contains("8.2") && anchors.contains("6.2.3"),
        "{anchors:?}"
    );
    let mut files = Vec::new();
    for dir in [
        "crates",
        "src",
        "tests",
        "examples",
        "benches",
        "fuzz/fuzz_targets",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("SPEC §") {
            let cited: String = text[at + "SPEC §".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let cited = cited.trim_end_matches('.');
            if !cited.is_empty() && !anchors.contains(cited) {
                missing.push(format!("{}: §{cited}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "citations of nothing:\n{}",
        missing.join("\n")
    );
}
