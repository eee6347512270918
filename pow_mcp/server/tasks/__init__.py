"""MCP Tasks over the job store: the core tasks of protocol 2025-11-25 and the
`io.modelcontextprotocol/tasks` extension of 2026-07-28.

A task is what a task-augmented call of `start_proof_of_work` (one job) or
`start_proof_of_work_batch` (a batch) creates; its taskId is the job_id (the batch_id),
and the job that heads it carries `task_id` in the store. Nothing about a task lives in
memory, so it outlives a restart and every instance on the same store answers for it.

- 2025-11-25: the client asks (`params.task`); tasks/get, tasks/result (blocks until the
  end), tasks/cancel and tasks/list; one notifications/tasks/status when a task ends.
- 2026-07-28: the server decides. For a client that declares the extension on the request,
  the two start tools always answer with a task (a proof takes from seconds to hours);
  tasks/get (the result inline once completed), tasks/cancel, tasks/update.
"""
