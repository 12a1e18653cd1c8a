# A model image: the model directory and its item index, delivered to prerank pods by the init
# container in deploy/k8s/deployment.yaml. Tag it with the model version. Build from a directory
# holding model/ and index.safetensors (e.g. demo/ after scripts/make-demo.sh):
#
#   docker build -f deploy/docker/model.Dockerfile -t registry.example.com/prerank-model:demo-20261123 demo
#
# Check the pair first: `prerank inspect demo/index.safetensors` prints the model fingerprint the
# index was built for; the server refuses an index whose fingerprint is not its model's.
FROM busybox:1.36
COPY model/model.json model/weights.safetensors /model/
COPY index.safetensors /index.safetensors
USER 10001:10001
