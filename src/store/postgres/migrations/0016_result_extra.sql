-- What a target (your application) answered beside its output: its tool calls and metadata, as
-- a JSON object {"tool_calls": …, "metadata": …}; NULL when it gave neither.

ALTER TABLE results ADD COLUMN extra TEXT;
