-- State of the simulated environments. Names compare case-insensitively,
-- as in Dataverse.
CREATE TABLE environments (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    organization_id TEXT NOT NULL,
    business_unit_id TEXT NOT NULL,
    user_id TEXT NOT NULL
);

CREATE TABLE connections (
    env TEXT NOT NULL COLLATE NOCASE,
    connection_id TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    display_name TEXT,
    status TEXT NOT NULL,
    PRIMARY KEY (env, connection_id)
);

CREATE TABLE solutions (
    env TEXT NOT NULL COLLATE NOCASE,
    unique_name TEXT NOT NULL COLLATE NOCASE,
    solution_id TEXT NOT NULL,
    friendly_name TEXT,
    version TEXT NOT NULL,
    managed INTEGER NOT NULL,
    publisher TEXT,
    installed_on TEXT NOT NULL,
    zip BLOB NOT NULL,
    PRIMARY KEY (env, unique_name)
);

-- Components each installed solution registered (ComponentKey: type + lowercase name).
CREATE TABLE components (
    env TEXT NOT NULL COLLATE NOCASE,
    solution TEXT NOT NULL COLLATE NOCASE,
    component_type TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (env, solution, component_type, name)
);

-- Components installed solutions need from others (their MissingDependencies).
CREATE TABLE requirements (
    env TEXT NOT NULL COLLATE NOCASE,
    solution TEXT NOT NULL COLLATE NOCASE,
    component_type TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (env, solution, component_type, name)
);

CREATE TABLE env_var_definitions (
    env TEXT NOT NULL COLLATE NOCASE,
    schema_name TEXT NOT NULL COLLATE NOCASE,
    id TEXT NOT NULL,
    solution TEXT NOT NULL,
    display_name TEXT,
    type INTEGER NOT NULL,
    default_value TEXT,
    is_required INTEGER NOT NULL,
    PRIMARY KEY (env, schema_name)
);

CREATE TABLE env_var_values (
    env TEXT NOT NULL COLLATE NOCASE,
    schema_name TEXT NOT NULL COLLATE NOCASE,
    id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (env, schema_name)
);

CREATE TABLE connection_references (
    env TEXT NOT NULL COLLATE NOCASE,
    logical_name TEXT NOT NULL COLLATE NOCASE,
    id TEXT NOT NULL,
    solution TEXT NOT NULL,
    display_name TEXT,
    connector_id TEXT NOT NULL,
    connection_id TEXT,
    PRIMARY KEY (env, logical_name)
);

CREATE TABLE async_operations (
    id TEXT PRIMARY KEY,
    env TEXT NOT NULL COLLATE NOCASE,
    import_job_id TEXT,
    name TEXT NOT NULL,
    statecode INTEGER NOT NULL,
    statuscode INTEGER NOT NULL,
    message TEXT,
    friendlymessage TEXT,
    created_on TEXT NOT NULL,
    completed_on TEXT
);
CREATE UNIQUE INDEX async_operations_job ON async_operations (env, import_job_id);
