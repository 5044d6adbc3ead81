-- Health of a ferryman.dev Rollout, read from its status conditions and phase.
-- Runs with open libraries off (argocd-cm): base and table only, no string/math.
-- Every phase maps to a health, never to Unknown (see docs/gitops.md, "What Argo CD shows").
local hs = {}
local st = obj.status
local gen = obj.metadata.generation
if st == nil or st.observedGeneration == nil or (gen ~= nil and st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe the latest spec"
  return hs
end

local cond = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    cond[c.type] = c
  end
end

local function text(prefix, message)
  if message ~= nil and message ~= "" then
    return prefix .. ": " .. message
  end
  return prefix
end

local phase = st.phase
local msg = st.message

-- Stopped for good until the spec or a user action changes something.
local stalled = { RolledBack = true, Aborted = true, Rejected = true, Invalid = true }
if stalled[phase] then
  hs.status = "Degraded"
  hs.message = text(phase, msg)
  return hs
end
if cond.Stalled ~= nil and cond.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(cond.Stalled.reason, cond.Stalled.message)
  return hs
end

-- The stable version lacks the Ready replicas its traffic needs.
if cond.Available ~= nil and cond.Available.status == "False" then
  hs.status = "Degraded"
  hs.message = text("stable not available", cond.Available.message)
  return hs
end

if phase == "Paused" then
  local reason = nil
  if cond.Paused ~= nil and cond.Paused.status == "True" then
    reason = cond.Paused.reason
  elseif st.pause ~= nil then
    reason = st.pause.reason
  end
  -- Inconclusive or erroring analysis: traffic holds where it is and nothing failed;
  -- the rollout resumes when measurements succeed, or a human promotes or aborts.
  -- Suspended, not Degraded (docs/gitops.md says why).
  hs.status = "Suspended"
  hs.message = text("paused (" .. (reason or "no reason given") .. ")", msg)
  return hs
end

if phase == "Progressing" or phase == "Baking" or phase == nil then
  hs.status = "Progressing"
  hs.message = text(phase or "Pending", msg)
  return hs
end

if phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = msg or "Healthy"
  return hs
end

-- A phase this script does not know (a newer operator): say so, loudly.
hs.status = "Degraded"
hs.message = text("unknown phase " .. tostring(phase), msg)
return hs
