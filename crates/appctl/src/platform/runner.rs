//! Child processes: appctl shells out only to docker, kind and git (and asks kubectl its
//! version). A failure shows the command line and the child's stderr. Behind a trait so the
//! observation logic is tested with a fake.

use std::process::Command;

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
    /// Runs `program args` to completion, capturing output; non-zero exit is an error.
    fn run(&self, program: &str, args: &[&str]) -> Result<Output, RunError>;

    /// Like [`Runner::run`] but output streams to the terminal (long builds).
    fn run_visible(&self, program: &str, args: &[&str]) -> Result<(), RunError> {
        self.run(program, args).map(|_| ())
    }
}

/// The real thing.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

fn line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error for a program that could not be started.
fn spawn_error(program: &str, args: &[&str], e: std::io::Error) -> RunError {
    if e.kind() == std::io::ErrorKind::NotFound {
        RunError::NotFound {
            program: program.into(),
        }
    } else {
        RunError::Io {
            command: line(program, args),
            source: e,
        }
    }
}

impl Runner for System {
    fn run(&self, program: &str, args: &[&str]) -> Result<Output, RunError> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| spawn_error(program, args, e))?;
        let output = Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if out.status.success() {
            Ok(output)
        } else {
            Err(RunError::Failed {
                command: line(program, args),
                code: output.code,
                stderr: output.stderr,
            })
        }
    }

    fn run_visible(&self, program: &str, args: &[&str]) -> Result<(), RunError> {
        let status = Command::new(program)
            .args(args)
            .status()
            .map_err(|e| spawn_error(program, args, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(RunError::Failed {
                command: line(program, args),
                code: status.code(),
                stderr: "(printed above)".into(),
            })
        }
    }
}
