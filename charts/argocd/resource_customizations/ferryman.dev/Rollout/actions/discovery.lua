-- Which ferryman actions apply now: the phases of ferryman's own rule (plan/actions.py,
-- which the operator applies again when the action arrives and records its verdict in
-- status.lastAction). What the status cannot tell (whether the previous stable version is
-- still warm) is left to the operator; scaleDownAt is its sign of warmth.
local actions = {}
local st = obj.status or {}
local phase = st.phase
local rolling = (phase == "Progressing" or phase == "Paused")
  and st.candidateVersion ~= nil and st.stableVersion ~= nil
local ended = phase == "RolledBack" or phase == "Aborted" or phase == "Rejected"
local has_history = (st.history ~= nil and #st.history > 0)
  or (st.rolledBackVersions ~= nil and #st.rolledBackVersions > 0)
local warm_previous = st.previousStableVersion ~= nil and st.scaleDownAt ~= nil
local manual = st.pause ~= nil and st.pause.reason == "Manual"
-- Only approvals (ModelApprovals, docs/approvals.md) pass an approval gate.
local awaiting = st.pause ~= nil and st.pause.reason == "AwaitingApproval"

actions["promote"] = { ["disabled"] = not rolling or awaiting }
actions["promote-full"] = { ["disabled"] = not rolling or awaiting }
actions["abort"] = { ["disabled"] = not (rolling or (phase == "Baking" and warm_previous)) }
actions["retry"] = { ["disabled"] = not (ended and has_history) }
actions["pause"] = { ["disabled"] = not (rolling and not manual) }
actions["resume"] = { ["disabled"] = not (rolling and phase == "Paused" and manual) }
actions["undo"] = {
  ["disabled"] = not (phase == "Healthy" and st.candidateVersion == nil and warm_previous)
}
return actions
