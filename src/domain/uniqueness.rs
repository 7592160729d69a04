//! Check (7): process names and (func name, start param regex) pairs are
//! unique within one service instance.
//!
//! The same set serves both halves of the check: first within the request,
//! then against the database and the earlier requests of the same batch.

use std::collections::HashSet;

use super::rejection::quote;
use super::{Code, Process, Rejection};

/// Names and pairs already used in ONE service instance, borrowed from the
/// rows read and the requests planned.
#[derive(Debug, Default)]
pub struct Taken<'a> {
    names: HashSet<&'a str>,
    pairs: HashSet<(&'a str, &'a str)>,
}

/// Which half of check (7) found the collision, for the message.
#[derive(Clone, Copy)]
enum Against {
    Request,
    ServiceInstance,
}

impl<'a> Taken<'a> {
    /// Records a process that already exists in the service instance.
    pub fn insert_existing(
        &mut self,
        name: &'a str,
        func_name: &'a str,
        start_param_regex: &'a str,
    ) {
        self.names.insert(name);
        self.pairs.insert((func_name, start_param_regex));
    }

    /// Err(1199014 naming processes[i].process_info.bk_process_name or .bk_func_name)
    /// if any process collides; on Ok, claims all of them, so later requests of
    /// the batch for the same service instance see them as taken.
    pub fn claim(&mut self, processes: &'a [Process]) -> Result<(), Rejection> {
        for (i, process) in processes.iter().enumerate() {
            self.check(i, process, Against::ServiceInstance)?;
        }
        // Duplicates inside `processes` itself were refused by check (7) within the request.
        within_request(processes)?;
        for process in processes {
            self.insert(process);
        }
        Ok(())
    }

    fn check(&self, i: usize, process: &Process, against: Against) -> Result<(), Rejection> {
        if self.names.contains(process.bk_process_name.as_str()) {
            return Err(duplicate_name(i, process, against));
        }
        if self.pairs.contains(&pair(process)) {
            return Err(duplicate_pair(i, process, against));
        }
        Ok(())
    }

    fn insert(&mut self, process: &'a Process) {
        self.names.insert(&process.bk_process_name);
        self.pairs.insert(pair(process));
    }
}

fn pair(process: &Process) -> (&str, &str) {
    (&process.bk_func_name, &process.bk_start_param_regex)
}

/// Check (7), first half: a later process may not repeat an earlier one.
/// At most [`super::MAX_PROCESSES`] processes: comparing with each earlier
/// one costs less than hashing copies.
pub(super) fn within_request(processes: &[Process]) -> Result<(), Rejection> {
    for (i, process) in processes.iter().enumerate() {
        let earlier = &processes[..i];
        if earlier
            .iter()
            .any(|p| p.bk_process_name == process.bk_process_name)
        {
            return Err(duplicate_name(i, process, Against::Request));
        }
        if earlier.iter().any(|p| {
            p.bk_func_name == process.bk_func_name
                && p.bk_start_param_regex == process.bk_start_param_regex
        }) {
            return Err(duplicate_pair(i, process, Against::Request));
        }
    }
    Ok(())
}

impl Against {
    fn found(self) -> &'static str {
        match self {
            Against::Request => "is duplicated within the request",
            Against::ServiceInstance => "already exists in the service instance",
        }
    }
}

fn duplicate_name(i: usize, process: &Process, against: Against) -> Rejection {
    Rejection::new(
        Code::Duplicate,
        format!(
            "processes[{i}].process_info.bk_process_name: {} {}",
            quote(&process.bk_process_name),
            against.found()
        ),
    )
}

fn duplicate_pair(i: usize, process: &Process, against: Against) -> Rejection {
    Rejection::new(
        Code::Duplicate,
        format!(
            "processes[{i}].process_info.bk_func_name: {} with bk_start_param_regex {} {}",
            quote(&process.bk_func_name),
            quote(&process.bk_start_param_regex),
            against.found()
        ),
    )
}
