//! `deploy diff [FROM] [TO]`: file-level difference (added / modified / removed) between two
//! releases on each host, or between a release on the host and the artifact. FROM defaults to
//! the live release, TO to the service's artifact. Manifests come from `.deploy/manifests/`
//! (recorded at push time) and from the local artifact; nothing is changed anywhere.

use crate::app::{Context, InputError, unix_now};
use crate::cli::DiffArgs;
use crate::executor::HostError;
use crate::inventory::Version;
use crate::report::{Detail, Outcome, RunResult};

pub async fn run(context: &Context, arguments: &DiffArgs) -> Result<RunResult, InputError> {
    let parse = |text: &Option<String>, flag: &str| -> Result<Option<Version>, InputError> {
        text.as_deref()
            .map(|text| {
                Version::parse(text)
                    .map_err(|error| InputError(format!("{flag} {text:?}: {error}")))
            })
            .transpose()
    };
    let from = parse(&arguments.from, "FROM")?;
    let to = parse(&arguments.to, "TO")?;
    let services = context.services(&arguments.service)?;
    // TO defaults to the artifact: checked locally first, like a push.
    let artifacts = if to.is_none() {
        let names: Vec<String> = services
            .iter()
            .map(|&index| context.inventory.services[index].name.clone())
            .collect();
        let shipments = super::shipment::prepare(
            context,
            &super::shipment::Request {
                services: &names,
                version: None,
                artifact: None,
                keep_unpacked: false,
            },
        )
        .await?;
        shipments
            .into_iter()
            .map(|shipment| (shipment.service, shipment))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    let now = unix_now();
    let artifacts = &artifacts;
    let (from, to) = (from.as_ref(), to.as_ref());
    super::each_target(
        context,
        &services,
        "diff",
        false,
        |target, label, events| async move {
            let run = super::connect(context, target, label, &events, now).await?;
            let compared = async {
                let from_version = match from {
                    Some(version) => version.clone(),
                    None => run.facts().await?.live().cloned().ok_or_else(|| {
                        HostError::failed("diff", "no live release on this host to compare from")
                    })?,
                };
                let older = run
                    .recorded_manifest("read manifest", &from_version)
                    .await?;
                let (to_name, newer) = match to {
                    Some(version) => (
                        version.to_string(),
                        std::sync::Arc::new(run.recorded_manifest("read manifest", version).await?),
                    ),
                    None => {
                        let shipment = artifacts.get(&target.service).ok_or_else(|| {
                            HostError::failed("diff", "no artifact for this service")
                        })?;
                        (
                            format!("{} (artifact)", shipment.version),
                            std::sync::Arc::clone(&shipment.artifact.manifest),
                        )
                    }
                };
                Ok::<_, HostError>((
                    from_version,
                    to_name,
                    older.comparable().diff(&newer.comparable()),
                ))
            }
            .await;
            run.close().await;
            let (from_version, to_name, difference) = compared?;
            let mut result = super::result_for(context, target, Outcome::Ok);
            let summary = crate::report::render_diff(&difference, 0)[0].clone();
            result.from = Some(from_version.to_string());
            result.to = Some(to_name);
            result.detail = Some(Detail::Diff { diff: difference });
            Ok(super::Worked { result, summary })
        },
    )
    .await
}
