-- The import job (`importjobs(<ImportJobId>)`) of an ImportSolutionAsync
-- that named one: the solution it imports (known once the package is read)
-- and how long the simulated import was set to take (the environment's
-- `import_delay_ms` when it started), so its `progress` can be told while
-- it runs. The job's times are the operation's.
ALTER TABLE async_operations ADD COLUMN solution_name TEXT;
ALTER TABLE async_operations ADD COLUMN import_delay_ms INTEGER;
