//! Renders a [`BirdView`] with the templates of `bird-conf/templates/` (minijinja).
//!
//! The templates are built into the binary; `--templates DIR` replaces any of them by a file of
//! the same name in DIR (the others stay built in). `bird.conf.tmpl` is the entry point and
//! includes the others, so the result is one file that BIRD validates and loads as a whole.
//! Undefined variables are errors, so a template typo is never rendered as an empty string.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use minijinja::{Environment, UndefinedBehavior, syntax::SyntaxConfig, value::Serde};

use crate::view::BirdView;

/// The entry template.
pub const ENTRY: &str = "bird.conf.tmpl";

/// The built-in templates, by name.
pub const BUILT_IN: [(&str, &str); 4] = [
    (ENTRY, include_str!("../templates/bird.conf.tmpl")),
    (
        "pools.conf.tmpl",
        include_str!("../templates/pools.conf.tmpl"),
    ),
    (
        "blocks.conf.tmpl",
        include_str!("../templates/blocks.conf.tmpl"),
    ),
    (
        "peers.conf.tmpl",
        include_str!("../templates/peers.conf.tmpl"),
    ),
];

/// Why templates could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("read template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {name}: {source:#}")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
}

/// A set of templates, ready to render.
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from (`built-in` or a path).
    origins: BTreeMap<String, String>,
}

impl Templates {
    /// The built-in templates.
    pub fn built_in() -> Result<Self, RenderError> {
        Self::load(None)
    }

    /// The built-in templates, each replaced by `dir/<name>` when that file exists.
    pub fn with_overrides(dir: &Path) -> Result<Self, RenderError> {
        Self::load(Some(dir))
    }

    fn load(dir: Option<&Path>) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|source| RenderError::Template {
                name: "syntax".into(),
                source,
            })?;
        env.set_syntax(syntax);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut origins = BTreeMap::new();
        for (name, built_in) in BUILT_IN {
            let path = dir.map(|d| d.join(name)).filter(|p| p.is_file());
            let (source, origin) = match path {
                Some(path) => (
                    std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
                        path: path.clone(),
                        source,
                    })?,
                    path.display().to_string(),
                ),
                None => (built_in.to_string(), "built-in".to_string()),
            };
            env.add_template_owned(name, source)
                .map_err(|source| RenderError::Template {
                    name: name.into(),
                    source,
                })?;
            origins.insert(name.to_string(), origin);
        }
        Ok(Self { env, origins })
    }

    /// Where each template came from.
    pub fn origins(&self) -> &BTreeMap<String, String> {
        &self.origins
    }

    /// Renders the configuration.
    pub fn render(&self, view: &BirdView) -> Result<String, RenderError> {
        let fail = |source| RenderError::Template {
            name: ENTRY.into(),
            source,
        };
        self.env
            .get_template(ENTRY)
            .map_err(fail)?
            .render(Serde(view))
            .map_err(fail)
    }
}
