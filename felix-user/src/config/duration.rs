//! Durations as Calico writes them: a number of seconds (`90`, `2.5`, what its `*Secs`
//! environment variables hold) or a Go duration (`90s`, `1m30s`, `500ms`, what its
//! FelixConfiguration fields hold).

use std::time::Duration;

/// Parses `text` as seconds or as a Go duration; `None` when it is neither.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * unit).ok()?;
    }
    Some(total)
}

/// `90s`, `1.5s`: how the resolved configuration prints a duration.
pub fn format(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_go_durations_parse() {
        assert_eq!(parse("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
    }

    #[test]
    fn other_text_is_refused() {
        for text in ["", "s", "10x", "-5", "1m30", "ten"] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
