//! The six functions of the stack: the one place their names are written. Tags, events,
//! reports, the IAM roles of `template.yaml` and the test harnesses all name exactly these
//! (a unit test reads the template and the harnesses).

/// One of the stack's Lambda functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `ami-age-out`: deprecate, disable, deregister, delete; restore.
    AgeOut,
    /// `ami-build`: CreateImage, RegisterImage.
    Build,
    /// `ami-share`: launch and snapshot permissions, KMS grants.
    Share,
    /// `ami-copy`: copies into other regions.
    Copy,
    /// `ami-publish`: launch tests, SSM parameters, launch templates.
    Publish,
    /// `ami-distribute`: copies and SSM parameters in other accounts.
    Distribute,
}

impl Function {
    /// Every function, in the order the README's table lists them.
    pub const ALL: [Function; 6] = [
        Function::Build,
        Function::Share,
        Function::Copy,
        Function::Publish,
        Function::AgeOut,
        Function::Distribute,
    ];

    /// Its name: the binary, and what reports, events and `created-by` tags call it.
    pub const fn name(self) -> &'static str {
        match self {
            Function::AgeOut => "ami-age-out",
            Function::Build => "ami-build",
            Function::Share => "ami-share",
            Function::Copy => "ami-copy",
            Function::Publish => "ami-publish",
            Function::Distribute => "ami-distribute",
        }
    }

    /// The function of this name.
    pub fn named(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
