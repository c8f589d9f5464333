//! `deploy run [TASK] [--service S]`: a named task (`[services.NAME.tasks]`) run like `deploy
//! exec --service` on every selected host of each selected service that defines it (history
//! action `run`, with the task's command); with no TASK, the list of tasks (no host contacted).

use crate::app::{Context, InputError};
use crate::cli::RunArgs;
use crate::report::RunResult;

use super::exec::{Job, execute};

pub async fn run(context: &Context, arguments: &RunArgs) -> Result<RunResult, InputError> {
    let Some(task) = &arguments.task else {
        return Err(InputError("no task named".to_string()));
    };
    let services: Vec<usize> = context
        .services(&arguments.service)?
        .into_iter()
        .filter(|&service| context.inventory.services[service].tasks.contains_key(task))
        .collect();
    if services.is_empty() {
        return Err(InputError(format!(
            "no selected service defines a task named `{}` in {} (`deploy run` lists the tasks)",
            crate::text::escape_line(task),
            context.inventory.file.display()
        )));
    }
    let jobs = context
        .targets(&services)?
        .into_iter()
        .map(|target| Job {
            service: Some(target.service),
            host: target.host,
            command: context.inventory.services[target.service].tasks[task].clone(),
        })
        .collect();
    Ok(execute(context, "run", jobs, arguments.sudo).await)
}

/// The tasks of the selected services: text lines, or one JSON document.
pub fn list(context: &Context, arguments: &RunArgs) -> Result<String, InputError> {
    let services = context.services(&arguments.service)?;
    let mut tasks = Vec::new();
    for &service in &services {
        let service = &context.inventory.services[service];
        for (name, command) in &service.tasks {
            tasks.push(serde_json::json!({
                "service": service.name,
                "task": name,
                "command": command,
            }));
        }
    }
    if context.json {
        let document = serde_json::json!({ "tasks": tasks });
        return Ok(serde_json::to_string_pretty(&document).unwrap_or_default() + "\n");
    }
    if tasks.is_empty() {
        return Ok("no tasks defined ([services.NAME.tasks])\n".to_string());
    }
    let rows: Vec<Vec<String>> = std::iter::once(vec![
        "SERVICE".to_string(),
        "TASK".to_string(),
        "COMMAND".to_string(),
    ])
    .chain(tasks.iter().map(|task| {
        ["service", "task", "command"]
            .iter()
            .map(|key| task[key].as_str().unwrap_or("").to_string())
            .collect()
    }))
    .collect();
    Ok(crate::report::render_rows(&rows))
}
