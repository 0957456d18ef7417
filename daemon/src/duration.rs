//! Durations as people write them (`500ms`, `5s`, `2m`, `24h`): parsed the same way
//! by the agent's settings, the admin API's query parameters and body fields, and the
//! client commands. A leaf module, so that none of them imports another for it.

use std::time::Duration;

/// Parses `500ms`, `5s`, `2m`, `24h` and the other humantime forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 500ms, 5s, 2m or 24h"))
}

/// Writes a duration the way the documentation does: in the largest of `h`, `m`, `s`
/// and `ms` that divides it (`24h`, not humantime's `1day`), so a default reads back
/// through [`parse_duration`] and matches docs/configuration.md.
pub fn format_duration(d: &Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
