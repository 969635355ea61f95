//! Talking to BIRD: `bird -p -c FILE` validates a configuration without running it, and
//! `birdc -v -s CTL <command>` sends a command to the running daemon. With `-v` every reply line
//! carries BIRD's reply code (`0003 Reconfigured`, `8002 <error>`, `9001 <parse error>`), which
//! is what the outcome is read from.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use tokio::process::Command;

/// How long one `bird -p` or `birdc` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What went wrong talking to BIRD.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {CALL_TIMEOUT:?}")]
    Timeout { program: String },
    /// BIRD refused the configuration; `message` is BIRD's.
    #[error("BIRD rejected the configuration: {message}")]
    Rejected { message: String },
    /// No BIRD answers on the control socket (not started yet, restarting, shutting down).
    #[error("BIRD is not reachable on {ctl}: {message}")]
    Unreachable { ctl: PathBuf, message: String },
    /// A reply that is none of the above.
    #[error("unexpected reply from birdc {command}: {output}")]
    Unexpected { command: String, output: String },
}

impl BirdError {
    /// Whether BIRD refused the configuration itself (as opposed to not being there).
    pub fn is_rejection(&self) -> bool {
        matches!(self, BirdError::Rejected { .. })
    }
}

/// How BIRD took a `configure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconfigured {
    /// `0003 Reconfigured`.
    Done,
    /// `0004 Reconfiguration in progress`: accepted, protocols are being restarted.
    InProgress,
    /// `0005 Reconfiguration already in progress, queueing new config`.
    Queued,
}

/// The `bird` and `birdc` programs and the control socket.
#[derive(Clone, Debug)]
pub struct Bird {
    pub bird: PathBuf,
    pub birdc: PathBuf,
    pub ctl: PathBuf,
}

impl Bird {
    /// `bird` and `birdc` from PATH, talking on `ctl`.
    pub fn new(ctl: impl Into<PathBuf>) -> Self {
        Self {
            bird: "bird".into(),
            birdc: "birdc".into(),
            ctl: ctl.into(),
        }
    }

    /// Validates `config` with `bird -p -c` (parse only: BIRD does not start).
    pub async fn check(&self, config: &Path) -> Result<(), BirdError> {
        let mut command = Command::new(&self.bird);
        command.arg("-p").arg("-c").arg(config);
        let output = run(&self.bird, command).await?;
        if output.status.success() {
            return Ok(());
        }
        let message = text(&output);
        let message = message.strip_prefix("bird: ").unwrap_or(&message);
        Err(BirdError::Rejected {
            message: message.to_string(),
        })
    }

    /// `birdc configure`: BIRD reads its configuration file again.
    pub async fn configure(&self) -> Result<Reconfigured, BirdError> {
        let reply = self.command(&["configure"]).await?;
        let has = |code: &str| reply.iter().any(|(c, _)| c == code);
        if has("0003") {
            Ok(Reconfigured::Done)
        } else if has("0004") {
            Ok(Reconfigured::InProgress)
        } else if has("0005") {
            Ok(Reconfigured::Queued)
        } else if has("0006") {
            Err(BirdError::Unreachable {
                ctl: self.ctl.clone(),
                message: "BIRD is shutting down".into(),
            })
        } else {
            Err(BirdError::Unexpected {
                command: "configure".into(),
                output: join(&reply),
            })
        }
    }

    /// Sends `args` as one command; returns the reply lines as (code, text). A `8xxx`/`9xxx`
    /// reply is [`BirdError::Rejected`] for `configure` and [`BirdError::Unexpected`] otherwise.
    pub async fn command(&self, args: &[&str]) -> Result<Vec<(String, String)>, BirdError> {
        let mut command = Command::new(&self.birdc);
        command.arg("-v").arg("-s").arg(&self.ctl).args(args);
        let output = run(&self.birdc, command).await?;
        let all = text(&output);
        if all.contains("Unable to connect to server control socket") {
            return Err(BirdError::Unreachable {
                ctl: self.ctl.clone(),
                message: all,
            });
        }
        let reply = parse_reply(&String::from_utf8_lossy(&output.stdout));
        let errors: Vec<&str> = reply
            .iter()
            .filter(|(code, _)| code.starts_with('8') || code.starts_with('9'))
            .map(|(_, text)| text.as_str())
            .collect();
        if !errors.is_empty() {
            let message = errors.join("; ");
            return Err(if args.first() == Some(&"configure") {
                BirdError::Rejected { message }
            } else {
                BirdError::Unexpected {
                    command: args.join(" "),
                    output: message,
                }
            });
        }
        if reply.is_empty() || !output.status.success() {
            return Err(BirdError::Unexpected {
                command: args.join(" "),
                output: all,
            });
        }
        Ok(reply)
    }

    /// `birdc show protocols`: (name, protocol, state, info) of every protocol.
    pub async fn protocols(&self) -> Result<Vec<ProtocolState>, BirdError> {
        let reply = self.command(&["show", "protocols"]).await?;
        Ok(reply
            .iter()
            .filter(|(code, _)| code == "1002")
            .filter_map(|(_, line)| ProtocolState::parse(line))
            .collect())
    }
}

/// One line of `show protocols`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolState {
    pub name: String,
    pub proto: String,
    pub state: String,
    pub info: String,
}

impl ProtocolState {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let name = words.next()?.to_string();
        let proto = words.next()?.to_string();
        let _table = words.next()?;
        let state = words.next()?.to_string();
        let _since = words.next();
        let info = words.collect::<Vec<_>>().join(" ");
        Some(Self {
            name,
            proto,
            state,
            info,
        })
    }
}

/// Reply lines of `birdc -v`: `NNNN-text` (more follows), `NNNN text` (last), ` text` (a
/// continuation of the previous code).
fn parse_reply(stdout: &str) -> Vec<(String, String)> {
    let mut reply: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        let code = line
            .get(..4)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
        match (code, line.as_bytes().get(4)) {
            (Some(code), Some(b'-' | b' ')) => {
                reply.push((code.to_string(), line[5..].to_string()))
            }
            (Some(code), None) => reply.push((code.to_string(), String::new())),
            _ => {
                let code = reply.last().map(|(c, _)| c.clone()).unwrap_or_default();
                reply.push((code, line.trim_start_matches(' ').to_string()));
            }
        }
    }
    reply
}

fn join(reply: &[(String, String)]) -> String {
    reply
        .iter()
        .map(|(code, text)| format!("{code} {text}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// stdout and stderr, trimmed, as one text.
fn text(output: &Output) -> String {
    let mut all = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !all.is_empty() {
            all.push('\n');
        }
        all.push_str(stdout.trim());
    }
    all
}

async fn run(program: &Path, mut command: Command) -> Result<Output, BirdError> {
    let name = program.display().to_string();
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    match tokio::time::timeout(CALL_TIMEOUT, command.output()).await {
        Err(_) => Err(BirdError::Timeout { program: name }),
        Ok(result) => result.map_err(|source| BirdError::Spawn {
            program: name,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reply_codes() {
        let out = "0001 BIRD 2.0.12 ready.\n0002-Reading configuration from /x.conf\n8002 /x.conf:67:1 syntax error\n";
        let reply = parse_reply(out);
        assert_eq!(reply.len(), 3);
        assert_eq!(
            reply[1],
            ("0002".into(), "Reading configuration from /x.conf".into())
        );
        assert_eq!(reply[2].0, "8002");
        let table = "2002-Name       Proto      Table      State  Since         Info\n1002-device1    Device     ---        up     02:05:12.731  \n Mesh_10_0_0_2 BGP        ---        start  02:05:12.731  Passive\n0000 \n";
        let reply = parse_reply(table);
        assert_eq!(
            reply[2],
            (
                "1002".into(),
                "Mesh_10_0_0_2 BGP        ---        start  02:05:12.731  Passive".into()
            )
        );
        let p = ProtocolState::parse(&reply[2].1).expect("line");
        assert_eq!(
            (p.name.as_str(), p.state.as_str(), p.info.as_str()),
            ("Mesh_10_0_0_2", "start", "Passive")
        );
    }
}
