use std::collections::HashSet;

use super::rejection::quote;
use super::{Code, Process, Rejection};

/// Names and pairs already used in ONE service instance.
#[derive(Debug, Default)]
pub struct Taken {
    names: HashSet<String>,
    pairs: HashSet<(String, String)>,
}

/// Which half of check (7) found the collision, for the message.
#[derive(Clone, Copy)]
enum Against {
    Request,
    ServiceInstance,
}

impl Taken {
    /// Records a process that already exists in the service instance.
    pub fn insert_existing(&mut self, name: String, func_name: String, start_param_regex: String) {
        self.names.insert(name);
        self.pairs.insert((func_name, start_param_regex));
    }

    /// Err(1199014 naming processes[i].process_info.bk_process_name or .bk_func_name)
    /// if any process collides; on Ok, claims all of them, so later requests of
    /// the batch for the same service instance see them as taken.
    pub fn claim(&mut self, processes: &[Process]) -> Result<(), Rejection> {
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
        let found = match against {
            Against::Request => "is duplicated within the request",
            Against::ServiceInstance => "already exists in the service instance",
        };
        let path = format!("processes[{i}].process_info");
        if self.names.contains(&process.bk_process_name) {
            return Err(Rejection::new(
                Code::Duplicate,
                format!(
                    "{path}.bk_process_name: {} {found}",
                    quote(&process.bk_process_name)
                ),
            ));
        }
        if self.pairs.contains(&pair(process)) {
            return Err(Rejection::new(
                Code::Duplicate,
                format!(
                    "{path}.bk_func_name: {} with bk_start_param_regex {} {found}",
                    quote(&process.bk_func_name),
                    quote(&process.bk_start_param_regex)
                ),
            ));
        }
        Ok(())
    }

    fn insert(&mut self, process: &Process) {
        self.names.insert(process.bk_process_name.clone());
        self.pairs.insert(pair(process));
    }
}

fn pair(process: &Process) -> (String, String) {
    (
        process.bk_func_name.clone(),
        process.bk_start_param_regex.clone(),
    )
}

/// Check (7), first half: a later process may not repeat an earlier one.
pub fn within_request(processes: &[Process]) -> Result<(), Rejection> {
    let mut seen = Taken::default();
    for (i, process) in processes.iter().enumerate() {
        seen.check(i, process, Against::Request)?;
        seen.insert(process);
    }
    Ok(())
}
