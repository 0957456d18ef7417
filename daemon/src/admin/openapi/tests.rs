//! The document's completeness and the rendered copy in `docs/openapi.json`.

use super::*;
use std::path::PathBuf;

fn copy_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// `docs/openapi.json` is the document the code serves. With
/// `PROBEMESH_UPDATE_OPENAPI=1` the test writes it instead of comparing.
#[test]
fn docs_copy_is_the_served_document() {
    let now = document_json();
    let path = copy_path();
    if std::env::var("PROBEMESH_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let copy = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        copy == now,
        "docs/openapi.json is stale: render it again with `PROBEMESH_UPDATE_OPENAPI=1 cargo test -p probemesh --lib docs_copy_is_the_served_document`"
    );
}
