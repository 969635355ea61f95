//! `felix run --print-config`: each effective value with its source.

use super::layers::RawValue;

/// A table of setting, value, source and where it was read.
pub fn table(values: &[RawValue]) -> String {
    let rows: Vec<[String; 4]> = values
        .iter()
        .map(|v| {
            [
                v.setting.name.to_owned(),
                v.text.clone().unwrap_or_else(|| "-".into()),
                v.source.to_string(),
                v.origin.clone(),
            ]
        })
        .collect();
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    felix_rows::table(&["SETTING", "VALUE", "SOURCE", "FROM"], &rows)
}

/// The values as JSON: `[{"setting", "value", "source", "from"}]`.
pub fn json(values: &[RawValue]) -> serde_json::Value {
    values
        .iter()
        .map(|v| {
            serde_json::json!({
                "setting": v.setting.name,
                "value": v.text,
                "source": v.source.to_string(),
                "from": v.origin,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layers::Layers;

    #[test]
    fn every_setting_is_printed_with_its_source() {
        let layers = Layers {
            flags: [("HealthPort", "7777".to_owned())].into(),
            ..Layers::default()
        };
        let text = table(&layers.pick());
        let line = text
            .lines()
            .find(|l| l.starts_with("HealthPort "))
            .expect("a HealthPort row");
        assert!(line.contains("7777") && line.contains("flag") && line.contains("--health-port"));
        let line = text
            .lines()
            .find(|l| l.starts_with("PrometheusMetricsPort "))
            .expect("a metrics row");
        assert!(line.contains("9091") && line.contains("built-in default"));
        assert_eq!(
            text.lines().count(),
            crate::config::table::SETTINGS.len() + 1
        );
    }
}
