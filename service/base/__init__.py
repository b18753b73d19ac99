"""base: what every other room of the service stands on — configuration from the environment
(`config`), the one error envelope (`errors`), the page cache (`cache`), progress bars and stage
timers (`progress`). Imports no other room."""
