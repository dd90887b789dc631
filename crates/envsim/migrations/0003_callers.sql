-- Who made an import and who installed a solution: the user a request
-- acted for (CallerObjectId / MSCRMCallerID), else the environment's own
-- user; *_on_behalf_by is the environment's own user when it acted for
-- another (NULL otherwise), as Dataverse's createdonbehalfby is.
ALTER TABLE async_operations ADD COLUMN created_by TEXT;
ALTER TABLE async_operations ADD COLUMN created_on_behalf_by TEXT;
ALTER TABLE solutions ADD COLUMN modified_by TEXT;
ALTER TABLE solutions ADD COLUMN modified_on_behalf_by TEXT;
