//! Child processes: appctl shells out only to docker, kind and git (and asks kubectl its
//! version). A failure shows the command line and the child's stderr. Behind a trait so the
//! observation logic is tested with a fake.
//!
//! Secrets never go into a child's arguments (any user on the machine can read every
//! process's argv in /proc): a [`Cmd`] carries them in its environment, which only the same
//! user can read, and error messages show the arguments only.

use std::process::Command;

/// A program to run, its arguments and extra environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program, looked up on PATH.
    pub program: String,
    /// Its arguments: never a secret.
    pub args: Vec<String>,
    /// Extra environment variables (the place for a secret a child needs).
    pub env: Vec<(String, String)>,
}

impl Cmd {
    /// `program args…` with no extra environment.
    pub fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line as shown in messages (program and arguments, never the environment).
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Why a command could not give a successful result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program is not on PATH.
    #[error("`{program}` not found on PATH")]
    NotFound {
        /// The program.
        program: String,
    },
    /// It ran and failed.
    #[error("`{command}` failed (exit {code:?}):\n{stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit code.
        code: Option<i32>,
        /// Its standard error.
        stderr: String,
    },
    /// It could not be started for another reason.
    #[error("cannot run `{command}`: {source}")]
    Io {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs programs.
pub trait Runner {
    /// Runs `cmd` to completion, capturing output; non-zero exit is an error.
    fn run_cmd(&self, cmd: &Cmd) -> Result<Output, RunError>;

    /// Runs `program args` to completion, capturing output; non-zero exit is an error.
    fn run(&self, program: &str, args: &[&str]) -> Result<Output, RunError> {
        self.run_cmd(&Cmd::new(program, args))
    }

    /// Like [`Runner::run`] but output streams to the terminal (long builds).
    fn run_visible(&self, program: &str, args: &[&str]) -> Result<(), RunError> {
        self.run(program, args).map(|_| ())
    }
}

/// The real thing.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

/// The error for a program that could not be started.
fn spawn_error(cmd: &Cmd, e: std::io::Error) -> RunError {
    if e.kind() == std::io::ErrorKind::NotFound {
        RunError::NotFound {
            program: cmd.program.clone(),
        }
    } else {
        RunError::Io {
            command: cmd.line(),
            source: e,
        }
    }
}

impl Runner for System {
    fn run_cmd(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let out = cmd.command().output().map_err(|e| spawn_error(cmd, e))?;
        let output = Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if out.status.success() {
            Ok(output)
        } else {
            Err(RunError::Failed {
                command: cmd.line(),
                code: output.code,
                stderr: output.stderr,
            })
        }
    }

    fn run_visible(&self, program: &str, args: &[&str]) -> Result<(), RunError> {
        let cmd = Cmd::new(program, args);
        let status = cmd.command().status().map_err(|e| spawn_error(&cmd, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(RunError::Failed {
                command: cmd.line(),
                code: status.code(),
                stderr: "(printed above)".into(),
            })
        }
    }
}
