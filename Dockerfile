# The relay's image. GDAL's Python bindings come from Debian (python3-gdal, as on the test machines): the relay
# reads each completed task's footprint, projection and thumbnail with them for its STAC items.
# (The development node also needs GDAL and is meant for this repository's tests and demo.)
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-gdal ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv --system-site-packages /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY proxy ./proxy
COPY devnode ./devnode
RUN pip install --no-cache-dir .
EXPOSE 3000
ENTRYPOINT ["odx-relay"]
CMD ["--host", "0.0.0.0", "--port", "3000", "--data-dir", "/data"]
