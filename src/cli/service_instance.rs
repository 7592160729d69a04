use std::{
    io::{BufRead, BufReader},
    process::ExitCode,
};

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;
use crate::store::{self, service_instance::ServiceInstanceRow};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Upsert service instances from JSON Lines (`-` or no file: stdin).
    /// A bad line is reported with its number and nothing is imported.
    Import {
        /// JSON Lines file; `-` for standard input.
        file: Option<String>,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Import { file } = command;
    let reader: Box<dyn BufRead> = match file.as_deref() {
        None | Some("-") => Box::new(BufReader::new(std::io::stdin())),
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?,
        )),
    };
    let rows = match parse(reader) {
        Ok(rows) => rows,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("nothing imported: {} bad line(s)", errors.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    super::migrate::prepare_database(settings).await?;
    let pool = store::connect_pool(settings.database_url.expose(), 1)?;
    let mut client = pool.get().await.context("cannot connect to the database")?;
    let n = store::service_instance::upsert_all(&mut client, &rows).await?;
    println!("imported {n} service instance(s)");
    Ok(ExitCode::SUCCESS)
}

/// Parses every line; all errors, with line numbers, or all rows.
pub fn parse(reader: impl BufRead) -> Result<Vec<ServiceInstanceRow>, Vec<String>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                errors.push(format!("line {number}: cannot read: {e}"));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ServiceInstanceRow>(&line) {
            Ok(row) if row.id <= 0 || row.bk_biz_id <= 0 => {
                errors.push(format!("line {number}: id and bk_biz_id must be positive"));
            }
            Ok(row) if row.bk_supplier_account.contains('\0') || row.name.contains('\0') => {
                errors.push(format!("line {number}: strings must not contain NUL"));
            }
            Ok(row) => rows.push(row),
            Err(e) => errors.push(format!("line {number}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_reported_with_its_number_and_nothing_is_kept() {
        let input = "{\"id\":1,\"bk_biz_id\":2}\n\n{\"id\":\"x\",\"bk_biz_id\":2}\n{\"id\":3,\"bk_biz_id\":0}\n";
        let errors = parse(input.as_bytes()).expect_err("two bad lines");
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("line 3:"), "{errors:?}");
        assert!(errors[1].starts_with("line 4:"), "{errors:?}");
    }

    #[test]
    fn defaults_fill_the_optional_columns() {
        let rows = parse("{\"id\":1,\"bk_biz_id\":2}".as_bytes()).expect("valid");
        assert_eq!(rows[0].bk_supplier_account, "0");
        assert_eq!(rows[0].service_template_id, 0);
    }
}
