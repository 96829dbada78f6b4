local hs = {}
local degraded = {
  RulePacksInvalid = true, CompileFailed = true, TestsFailed = true,
  TenantNotFound = true, NamespaceNotAllowed = true, InvalidName = true,
  ProgressDeadlineExceeded = true, BundleRejected = true,
}
local generation = obj.metadata and obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for pd-operator to report status"
  return hs
end
if generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for pd-operator to observe generation " .. tostring(generation)
  return hs
end
for _, c in ipairs(status.conditions) do
  if c.type == "Stalled" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = (c.reason or "Stalled") .. ": " .. (c.message or "")
    return hs
  end
end
for _, c in ipairs(status.conditions) do
  if c.type == "Ready" then
    if generation ~= nil and c.observedGeneration ~= nil
        and c.observedGeneration < generation then
      hs.status = "Progressing"
      hs.message = "Waiting for pd-operator to observe generation " .. tostring(generation)
    elseif c.status == "True" then
      hs.status = "Healthy"
      hs.message = c.message or "Ready"
    elseif c.status == "False" and degraded[c.reason or ""] then
      hs.status = "Degraded"
      hs.message = (c.reason or "") .. ": " .. (c.message or "")
    else
      hs.status = "Progressing"
      hs.message = (c.reason or "Pending") .. ": " .. (c.message or "")
    end
    return hs
  end
end
hs.status = "Progressing"
hs.message = "No Ready condition yet"
return hs
