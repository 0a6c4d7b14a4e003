//! Adding components: refusals with reasons, export listings, the cache.

use anyhow::Result;
use vow_runtime::{Error, Executor};

use crate::support::*;

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused_with_the_reason() -> Result<()> {
    let executor = builder().build()?;
    match executor
        .add_component("junk", b"definitely not wasm".to_vec())
        .await
    {
        Err(Error::InvalidComponent { reason }) => assert!(!reason.is_empty()),
        other => anyhow::bail!("expected InvalidComponent, got {other:?}"),
    }
    // A core module is not a component either.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    match executor.add_component("core", core_module).await {
        Err(Error::InvalidComponent { reason }) => {
            assert!(reason.contains("component"), "{reason}")
        }
        other => anyhow::bail!("expected InvalidComponent, got {other:?}"),
    }
    assert!(executor.components().is_empty());
    Ok(())
}

#[tokio::test]
async fn missing_imports_are_named() -> Result<()> {
    let executor = builder().build()?;
    // The benchmark's floor guest imports an interface only the benchmark
    // provides.
    let path = vow_tests::guest("floor")?;
    match executor.add_component_file(&path).await {
        Err(Error::MissingImports { imports }) => {
            assert_eq!(imports, vec!["vow-bench:floor/waiter".to_owned()]);
        }
        other => anyhow::bail!("expected MissingImports, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn exports_are_listed_with_wit_signatures() -> Result<()> {
    let (executor, component) = harness().await?;
    let info = executor.component(component)?;
    assert_eq!(info.name, "harness");
    assert_eq!(info.sha256.len(), 64);
    let find = |name: &str| info.exports.iter().find(|e| e.name == name).cloned();
    let ping = find("ping").ok_or_else(|| anyhow::anyhow!("no ping"))?;
    assert_eq!(ping.params.len(), 1);
    assert_eq!(
        (ping.params[0].name.as_str(), ping.params[0].ty.as_str()),
        ("n", "u32")
    );
    assert_eq!(ping.results, vec!["u32".to_owned()]);
    let complete = find("complete").ok_or_else(|| anyhow::anyhow!("no complete"))?;
    assert_eq!(complete.params[1].ty, "list<u8>");
    assert_eq!(complete.results, vec!["bool".to_owned()]);
    assert!(
        complete.params[0]
            .ty
            .starts_with("record { worker-id: record {")
    );
    assert_eq!(executor.components(), vec![info]);
    Ok(())
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() -> Result<()> {
    let dir = vow_tests::guest_target_dir().join(format!("cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = vow_tests::guest("promises")?;
    {
        let executor = Executor::builder().cache_dir(&dir).build()?;
        executor.add_component_file(&path).await?;
    }
    let cached: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    assert_eq!(cached.len(), 1);
    // A second executor loads the cached artifact and runs it.
    let executor = Executor::builder().cache_dir(&dir).build()?;
    let component = executor.add_component_file(&path).await?;
    let worker = start(&executor, component, "cached").await?;
    assert_eq!(executor.invoke(&worker, "run", vec![]).await?.len(), 1);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn every_unsatisfied_import_is_named_with_the_reason_for_mismatches() -> Result<()> {
    let executor = builder().build()?;
    // `create-promise` with the wrong result type, plus two unknown interfaces.
    let component = wat::parse_str(
        r#"(component
            (import "golem:api/host@1.1.0" (instance
                (export "create-promise" (func (result u32)))))
            (import "acme:billing/charge@1.0.0" (instance
                (export "charge" (func (param "cents" u32)))))
            (import "acme:mail/send" (instance
                (export "send" (func (param "to" string)))))
        )"#,
    )?;
    match executor.add_component("mismatched", component).await {
        Err(Error::MissingImports { imports }) => {
            assert_eq!(imports.len(), 3, "{imports:?}");
            assert!(
                imports[0].starts_with("golem:api/host@1.1.0 ("),
                "{imports:?}"
            );
            assert!(imports[0].contains("create-promise"), "{imports:?}");
            assert_eq!(imports[1], "acme:billing/charge@1.0.0");
            assert_eq!(imports[2], "acme:mail/send");
        }
        other => anyhow::bail!("expected MissingImports, got {other:?}"),
    }
    Ok(())
}
