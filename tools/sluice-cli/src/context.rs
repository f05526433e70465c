//! What every command works with: the clients, the stack's outputs, and how to report.

use crate::aws::Clients;
use crate::error::CliError;
use crate::lambda::{Deployed, deployed};
use crate::pipeline::Function;
use crate::stack::Stack;

pub struct Context {
    pub clients: Clients,
    pub stack: Stack,
    /// Progress bars on stderr (a terminal, and neither `--quiet` nor `--json`).
    pub progress: bool,
}

impl Context {
    /// The deployed function behind `function` in this stack: its output must exist and
    /// the function too.
    pub async fn function(&self, function: Function) -> Result<Deployed, CliError> {
        let name = self.stack.output(function.name_output())?;
        deployed(&self.clients.lambda, name)
            .await
            .map_err(|err| match err {
                CliError::NotFound(_) => CliError::NotFound(format!(
                    "function {name} ({function}, output {} of stack {}) does not exist",
                    function.name_output(),
                    self.stack.name
                )),
                other => other,
            })
    }
}
