//! A Containerfile (Dockerfile syntax) as its instructions, enough to check what it installs,
//! copies and builds.

/// One instruction: the keyword in upper case and its arguments, continuation lines joined by a
/// space, comment lines dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
}

impl Instruction {
    /// The arguments split on whitespace (flags included, quotes kept).
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.args.split_whitespace()
    }
}

/// The instructions of `text`, in order. Comment lines (also between continuation lines, as
/// Docker allows) and blank lines are skipped.
pub fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        if !pending.is_empty() {
            pending.push(' ');
        }
        pending.push_str(body);
        if !continues {
            out.extend(split(&pending));
            pending.clear();
        }
    }
    out.extend(split(&pending));
    out
}

fn split(text: &str) -> Option<Instruction> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    Some(Instruction {
        keyword: keyword.to_ascii_uppercase(),
        args: args.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_and_comments() {
        let text = "# syntax=docker/dockerfile:1\nFROM a AS b\n\nRUN x \\\n  # inside\n  && y \\\n  && z\ncopy --from=b /out/ /\n";
        let got = instructions(text);
        assert_eq!(
            got,
            [
                Instruction {
                    keyword: "FROM".into(),
                    args: "a AS b".into()
                },
                Instruction {
                    keyword: "RUN".into(),
                    args: "x && y && z".into()
                },
                Instruction {
                    keyword: "COPY".into(),
                    args: "--from=b /out/ /".into()
                },
            ]
        );
        assert_eq!(
            got[2].words().collect::<Vec<_>>(),
            ["--from=b", "/out/", "/"]
        );
    }

    #[test]
    fn unterminated_continuation_is_kept() {
        let got = instructions("RUN a \\\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].args, "a");
    }
}
