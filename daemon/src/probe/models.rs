//! The `models` check (SPEC S3): whether a `GET /v1/models` answer lists the worker's
//! `model_id`. A process that answers `/health` while it loads another model, or after
//! its model was swapped, lists something else here, and is never routable under the
//! name the gateway routes by.

use serde::Deserialize;

/// An OpenAI-compatible model listing (`{"object":"list","data":[{"id":…},…]}`), as
/// vLLM, SGLang and smg serve it; other fields are ignored.
#[derive(Deserialize)]
struct Listing {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: Option<String>,
}

/// Whether `body` is a model listing whose `data[].id` holds `model` exactly. A body
/// that is not such a listing (not JSON, no `data` array, entries that are not
/// objects) does not list it.
pub fn lists_model(body: &[u8], model: &str) -> bool {
    serde_json::from_slice::<Listing>(body)
        .is_ok_and(|l| l.data.iter().any(|e| e.id.as_deref() == Some(model)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listing_that_names_the_model_exactly_lists_it() {
        let vllm = br#"{"object":"list","data":[{"id":"meta-llama/Llama-3-8B","object":"model","created":1,"owned_by":"vllm","root":"meta-llama/Llama-3-8B","parent":null,"max_model_len":8192}]}"#;
        assert!(lists_model(vllm, "meta-llama/Llama-3-8B"));
        assert!(!lists_model(vllm, "meta-llama/Llama-3-8b"), "case matters");
        assert!(!lists_model(vllm, "Llama-3-8B"), "no partial match");
        let adapters = br#"{"data":[{"id":"base"},{"id":"sql-lora","parent":"base"}]}"#;
        assert!(lists_model(adapters, "sql-lora"));
        for not_a_listing in [
            &b""[..],
            b"ok",
            b"{}",
            b"[]",
            br#"{"data":{"id":"m"}}"#,
            br#"{"data":["m"]}"#,
            br#"{"data":[{"name":"m"}]}"#,
            br#"{"data":[{"id":7}]}"#,
            b"\xff\xfe",
        ] {
            assert!(!lists_model(not_a_listing, "m"), "{not_a_listing:?}");
        }
        // Deeply nested garbage is an error, not a stack overflow.
        let deep = format!(r#"{{"data":[{{"id":"m","x":{}}}]}}"#, "[".repeat(100_000));
        assert!(!lists_model(deep.as_bytes(), "m"));
    }
}
