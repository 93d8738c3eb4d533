//! A spinner for slow steps (key generation, packaging).
//!
//! It draws on stderr only when stderr is a terminal and the output format is text, so it never
//! mixes with structured output or ends up in logs. It must not print results.

use std::io::IsTerminal;
use std::time::Duration;

use crate::output::OutputFormat;

/// Shows a spinner until dropped (or until [`Spinner::finish`]).
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    pub fn start(format: OutputFormat, message: &str) -> Self {
        if format.is_structured() || !std::io::stderr().is_terminal() {
            return Spinner { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner { bar: Some(bar) }
    }

    pub fn finish(self) {}
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
