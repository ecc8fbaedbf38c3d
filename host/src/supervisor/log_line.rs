//! One line of a supervised process's log: the value the reader makes, the
//! ring keeps, followers receive and the file writer writes, in a module of
//! its own so that none of those needs another to name it.

use std::time::SystemTime;

use serde::Serialize;

use crate::lines::Stream;

/// One line of a supervised process's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// `<name>-<instance>`.
    pub process: String,
    /// Which stream it came from.
    pub stream: Stream,
    /// The line, after ANSI stripping and with its timestamp prefix, if configured.
    pub text: String,
    /// When bosun read it.
    pub time: SystemTime,
}
