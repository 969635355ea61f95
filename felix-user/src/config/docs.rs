//! The settings table of `docs/configuration.md`, rendered from [`SETTINGS`] so that the
//! documentation cannot drift from the code (`felix-user/tests/settings_doc.rs` compares them).

use super::table::SETTINGS;

/// Every setting as a markdown table: name, flag, environment variables, FelixConfiguration
/// field, built-in default (`-`: required or unset) and what it accepts.
pub fn markdown_table() -> String {
    let code = |text: &str| format!("`{text}`");
    let mut out = String::from(
        "| Setting | Flag | Env | FelixConfiguration | Default | Accepts |\n\
         |---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let env: Vec<String> = s.env.iter().map(|e| code(e)).collect();
        let cells = [
            s.name.to_owned(),
            code(&format!("--{}", s.flag)),
            env.join(", "),
            s.field.map_or_else(|| "-".to_owned(), code),
            s.default.map_or_else(|| "-".to_owned(), code),
            s.accepts.replace('|', "\\|"),
        ];
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_setting_after_the_header() {
        let table = markdown_table();
        assert_eq!(table.lines().count(), SETTINGS.len() + 2);
        assert!(table.contains(
            "| PrometheusMetricsPort | `--metrics-port` | `FELIX_PROMETHEUSMETRICSPORT` | \
             `prometheusMetricsPort` | `9091` | a port from 1 to 65535 |"
        ));
    }
}
