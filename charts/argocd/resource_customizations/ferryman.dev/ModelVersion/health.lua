-- Health of a ferryman.dev ModelVersion. Runs with open libraries off (argocd-cm).
-- Every phase maps to a health, never to Unknown (see docs/gitops.md).
local hs = {}
local st = obj.status
local gen = obj.metadata.generation
if st == nil or st.phase == nil or st.observedGeneration == nil
    or (gen ~= nil and st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe the latest spec"
  return hs
end

local registered = nil
local expired = nil
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "Registered" then
      registered = c
    end
    if c.type == "Expired" and c.status == "True" then
      expired = c
    end
  end
end

local phase = st.phase
if phase == "Duplicate" then
  hs.status = "Degraded"
  if registered ~= nil and registered.message ~= nil and registered.message ~= "" then
    hs.message = "Duplicate: " .. registered.message
  else
    hs.message = "Duplicate"
  end
  return hs
end

if phase == "Registered" or phase == "Serving" or phase == "Retired" then
  hs.status = "Healthy"
  hs.message = phase
  if st.role ~= nil and st.role ~= "none" and st.rollout ~= nil then
    hs.message = phase .. " (" .. tostring(st.role) .. " of Rollout " .. st.rollout .. ")"
  end
  -- Past its Rollout's retention (docs/history-and-retention.md): still Healthy (nothing
  -- is broken), the message says what to do, e.g. remove it from Git.
  if expired ~= nil then
    hs.message = phase .. " (expired: " .. tostring(expired.message) .. ")"
  end
  return hs
end

hs.status = "Degraded"
hs.message = "unknown phase " .. tostring(phase)
return hs
