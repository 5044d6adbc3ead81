-- ferryman action "resume": the same annotation and nonce `kubectl ferryman resume` sets.
-- The operator applies it once per nonce and records Applied or Rejected (with why) in
-- status.lastAction. No math.random in argocd-cm scripts and os.time() has 1-second
-- resolution, so the nonce adds the object's resourceVersion: the first action's patch
-- changes it, so a second action in the same second gets a different nonce.
local os = require("os")
local rv = obj.metadata.resourceVersion or "0"
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ferryman.dev/action"] = "resume"
obj.metadata.annotations["ferryman.dev/action-id"] = "argocd-" .. os.time() .. "-" .. rv
return obj
