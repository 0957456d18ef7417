//! Durations in the admin API's input (`wait`, `health.interval`, `health.timeout`):
//! one or more `<number><unit>` terms with the units `ms`, `s`, `m` and `h`, separated
//! by at most one space (`500ms`, `5s`, `1m 30s`, `1m30s`). That is the form the API
//! writes them in, so a duration read from an answer can be sent back, and it is the
//! pattern the OpenAPI document gives ([`PATTERN`]), so the document and the server
//! agree on what a duration is. The agent's flags and file keep humantime's wider forms.

use std::time::Duration;

/// The JSON Schema pattern of an API duration.
pub const PATTERN: &str = "^[0-9]{1,7}(ms|s|m|h)( ?[0-9]{1,7}(ms|s|m|h))*$";

/// Most digits in one term.
const MAX_DIGITS: usize = 7;

/// Parses an API duration; the error says what form is expected.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration; write it like 500ms, 5s, 2m, 1h or 1m 30s");
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = Duration::ZERO;
    let mut terms = 0;
    while i < bytes.len() {
        if terms > 0 && bytes[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > MAX_DIGITS {
            return Err(bad());
        }
        let n: u64 = s[start..i].parse().map_err(|_| bad())?;
        let unit = if s[i..].starts_with("ms") {
            i += 2;
            Duration::from_millis(1)
        } else {
            let u = match bytes.get(i) {
                Some(b's') => Duration::from_secs(1),
                Some(b'm') => Duration::from_secs(60),
                Some(b'h') => Duration::from_secs(3600),
                _ => return Err(bad()),
            };
            i += 1;
            u
        };
        // At most 9,999,999 hours a term: no overflow in a u64 of seconds.
        total = total.saturating_add(unit.saturating_mul(u32::try_from(n).map_err(|_| bad())?));
        terms += 1;
    }
    if terms == 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_forms_parse() {
        let ms = |s: &str| parse(s).unwrap().as_millis();
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("5s"), 5_000);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("1m 30s"), 90_000);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms("9999999h"), 9_999_999 * 3_600_000);
    }

    #[test]
    fn what_the_api_writes_reads_back() {
        for ms in [100, 999, 1_000, 1_500, 59_999, 90_000, 3_599_999, 3_600_000] {
            let d = Duration::from_millis(ms);
            let written = humantime::format_duration(d).to_string();
            assert_eq!(parse(&written), Ok(d), "{written}");
        }
    }

    #[test]
    fn other_forms_are_refused() {
        for s in [
            "",
            "0",
            "5",
            "5 s",
            "5sec",
            "1day",
            " 5s",
            "5s ",
            "5s  1ms",
            "-5s",
            "1.5s",
            "12345678s",
            "5S",
            "ms",
            "5smin",
        ] {
            assert!(parse(s).is_err(), "{s:?}");
        }
    }
}
